-- Issue 17: linking a large group to a course (`groups~bulkAdd`) answers at once and
-- invites the group's current members in the background, slice by slice. The job's
-- state lives on its link row, so that a crash resumes where it stopped and any
-- replica's housekeeping takes over a job whose replica stopped (see
-- `domain::courses`). Links written before this migration were invited in full
-- inside their request: they are ready.
ALTER TABLE course_groups ADD COLUMN ready BOOLEAN NOT NULL DEFAULT TRUE;  -- every current member invited
ALTER TABLE course_groups ADD COLUMN invited_through UUID;               -- the cursor: last member id invited
ALTER TABLE course_groups ADD COLUMN lease_until BIGINT;                 -- ms: the working replica's claim
ALTER TABLE course_groups ADD COLUMN leased_by UUID;                     -- which process holds it
