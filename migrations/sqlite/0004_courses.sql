-- Courses, their participants (learner progress) and course <-> group links.

CREATE TABLE courses (
    spot_id BLOB NOT NULL REFERENCES spots (id) ON DELETE CASCADE,
    id BLOB NOT NULL,
    title TEXT NOT NULL,
    description TEXT,
    privacy TEXT NOT NULL,
    status TEXT NOT NULL,
    navigation_mode TEXT NOT NULL,
    participant_count BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (spot_id, id)
);
CREATE INDEX courses_status ON courses (spot_id, status);
CREATE INDEX courses_privacy ON courses (spot_id, privacy);

CREATE TABLE course_participants (
    spot_id BLOB NOT NULL,
    id BLOB NOT NULL,
    course_id BLOB NOT NULL,
    member_id BLOB NOT NULL,
    status TEXT NOT NULL,
    invited_by BLOB,
    invited_at BIGINT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT,
    unenrolled_at BIGINT,
    last_activity_at BIGINT,
    completion_rate BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (spot_id, id),
    FOREIGN KEY (spot_id, course_id) REFERENCES courses (spot_id, id) ON DELETE CASCADE,
    FOREIGN KEY (spot_id, member_id) REFERENCES members (spot_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX course_participants_member_key ON course_participants (spot_id, course_id, member_id);
CREATE INDEX course_participants_status ON course_participants (spot_id, course_id, status);

CREATE TABLE course_groups (
    spot_id BLOB NOT NULL,
    course_id BLOB NOT NULL,
    group_id BLOB NOT NULL,
    PRIMARY KEY (spot_id, course_id, group_id),
    FOREIGN KEY (spot_id, course_id) REFERENCES courses (spot_id, id) ON DELETE CASCADE,
    FOREIGN KEY (spot_id, group_id) REFERENCES spot_groups (spot_id, id) ON DELETE CASCADE
);
CREATE INDEX course_groups_group ON course_groups (spot_id, group_id, course_id);
