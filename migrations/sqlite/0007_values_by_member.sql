-- Member property values are stored in member order: the primary key leads with the
-- member (a WITHOUT ROWID table, so the table is its own member index), and the
-- (spot, property, value) partial indexes serve filters. Each value row was four
-- B-tree entries (rowid table, key, value index, member index) and is now two.
--
-- The values no longer reference custom_properties: that key needed an index led by
-- (spot, property) to check deletions. The domain keeps the link instead: a property
-- is deleted with its values in one transaction, after locking the property row, and
-- every value writer reads the properties it writes under a share lock (PostgreSQL;
-- SQLite serialises writers).
CREATE TABLE member_property_values_new (
    spot_id BLOB NOT NULL,
    member_id BLOB NOT NULL,
    property_id BLOB NOT NULL,
    ord BIGINT NOT NULL,
    value_text TEXT,
    value_num DOUBLE PRECISION,
    PRIMARY KEY (spot_id, member_id, property_id, ord),
    FOREIGN KEY (spot_id, member_id) REFERENCES members (spot_id, id) ON DELETE CASCADE
) WITHOUT ROWID;
INSERT INTO member_property_values_new (spot_id, member_id, property_id, ord, value_text, value_num)
    SELECT spot_id, member_id, property_id, ord, value_text, value_num FROM member_property_values;
DROP TABLE member_property_values;
ALTER TABLE member_property_values_new RENAME TO member_property_values;
CREATE INDEX member_property_values_text ON member_property_values (spot_id, property_id, value_text, member_id)
    WHERE value_text IS NOT NULL;
CREATE INDEX member_property_values_num ON member_property_values (spot_id, property_id, value_num, member_id)
    WHERE value_num IS NOT NULL;
