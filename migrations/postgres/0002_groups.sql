-- Groups (static and smart) and their membership. One membership table serves both
-- kinds, and the Kaizala dialect (group role, welcome message, sub-group links).

CREATE TABLE spot_groups (
    spot_id UUID NOT NULL REFERENCES spots (id) ON DELETE CASCADE,
    id UUID NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    emoji TEXT,
    icon TEXT,
    kind TEXT NOT NULL DEFAULT 'Static',
    rules TEXT,
    -- Smart groups: false until the first full computation has finished.
    ready BOOLEAN NOT NULL DEFAULT TRUE,
    -- Smart groups being computed: the computing replica's lease (ms); a lapsed lease is taken over.
    compute_lease_until BIGINT,
    member_count BIGINT NOT NULL DEFAULT 0,
    welcome_message TEXT,
    group_type TEXT NOT NULL DEFAULT 'Group',
    created_at BIGINT NOT NULL,
    PRIMARY KEY (spot_id, id)
);
CREATE INDEX spot_groups_name ON spot_groups (spot_id, name);
CREATE INDEX spot_groups_kind ON spot_groups (spot_id, kind);

CREATE TABLE group_members (
    spot_id UUID NOT NULL,
    group_id UUID NOT NULL,
    member_id UUID NOT NULL,
    -- The Kaizala group role: Admin or Member.
    group_role TEXT NOT NULL DEFAULT 'Member',
    added_at BIGINT NOT NULL,
    PRIMARY KEY (spot_id, group_id, member_id),
    FOREIGN KEY (spot_id, group_id) REFERENCES spot_groups (spot_id, id) ON DELETE CASCADE,
    FOREIGN KEY (spot_id, member_id) REFERENCES members (spot_id, id) ON DELETE CASCADE
);
CREATE INDEX group_members_member ON group_members (spot_id, member_id, group_id);

CREATE TABLE group_blacklist (
    spot_id UUID NOT NULL,
    group_id UUID NOT NULL,
    member_id UUID NOT NULL,
    PRIMARY KEY (spot_id, group_id, member_id),
    FOREIGN KEY (spot_id, group_id) REFERENCES spot_groups (spot_id, id) ON DELETE CASCADE,
    FOREIGN KEY (spot_id, member_id) REFERENCES members (spot_id, id) ON DELETE CASCADE
);
CREATE INDEX group_blacklist_member ON group_blacklist (spot_id, member_id, group_id);

-- Kaizala sub-groups: child is a sub-group of parent.
CREATE TABLE group_links (
    spot_id UUID NOT NULL,
    parent_id UUID NOT NULL,
    child_id UUID NOT NULL,
    PRIMARY KEY (spot_id, parent_id, child_id),
    FOREIGN KEY (spot_id, parent_id) REFERENCES spot_groups (spot_id, id) ON DELETE CASCADE,
    FOREIGN KEY (spot_id, child_id) REFERENCES spot_groups (spot_id, id) ON DELETE CASCADE
);
CREATE INDEX group_links_child ON group_links (spot_id, child_id, parent_id);
