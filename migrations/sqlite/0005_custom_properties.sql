-- Custom member properties: definitions and typed values. Values live in a side table
-- (one row per value; a MultipleSelect has one row per chosen option) indexed by
-- (spot, property, value), so a filter on one property is an index range.

CREATE TABLE custom_properties (
    spot_id BLOB NOT NULL REFERENCES spots (id) ON DELETE CASCADE,
    id BLOB NOT NULL,
    slug TEXT NOT NULL,
    label TEXT NOT NULL,
    description TEXT,
    type TEXT NOT NULL,
    possible_values TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (spot_id, id)
);
CREATE UNIQUE INDEX custom_properties_slug_key ON custom_properties (spot_id, slug);

CREATE TABLE member_property_values (
    spot_id BLOB NOT NULL,
    property_id BLOB NOT NULL,
    member_id BLOB NOT NULL,
    ord BIGINT NOT NULL,
    value_text TEXT,
    value_num DOUBLE PRECISION,
    PRIMARY KEY (spot_id, property_id, member_id, ord),
    FOREIGN KEY (spot_id, property_id) REFERENCES custom_properties (spot_id, id) ON DELETE CASCADE,
    FOREIGN KEY (spot_id, member_id) REFERENCES members (spot_id, id) ON DELETE CASCADE
);
CREATE INDEX member_property_values_text ON member_property_values (spot_id, property_id, value_text, member_id)
    WHERE value_text IS NOT NULL;
CREATE INDEX member_property_values_num ON member_property_values (spot_id, property_id, value_num, member_id)
    WHERE value_num IS NOT NULL;
CREATE INDEX member_property_values_member ON member_property_values (spot_id, member_id);
