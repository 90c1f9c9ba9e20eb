-- The GitHub status feed reads the previews whose jobs changed since its last look.
CREATE INDEX jobs_updated_idx ON jobs (updated_at) WHERE preview IS NOT NULL;
