-- Member property values are keyed in member order: the primary key leads with the
-- member (it serves a member's values and the cascade from members), and the
-- (spot, property, value) partial indexes serve filters; the separate member index
-- goes. Each value row was four index entries and is now three (heap, key, value).
--
-- The values no longer reference custom_properties: that key needed an index led by
-- (spot, property) to check deletions. The domain keeps the link instead: a property
-- is deleted with its values in one transaction, after locking the property row, and
-- every value writer reads the properties it writes under a share lock.
ALTER TABLE member_property_values DROP CONSTRAINT member_property_values_spot_id_property_id_fkey;
ALTER TABLE member_property_values DROP CONSTRAINT member_property_values_pkey;
ALTER TABLE member_property_values ADD PRIMARY KEY (spot_id, member_id, property_id, ord);
DROP INDEX member_property_values_member;
