-- Housekeeping (M7) deletes quarantined files after their retention, and stored attachments
-- where a local retention is set: the record stays, and says when its file went.
ALTER TABLE attachments ADD COLUMN file_removed_at timestamptz;
