-- A repository's preview source (`{"type": "dockerfile" | "auto"}`), as its pull requests'
-- pipelines name it; NULL is the default (the repository's Dockerfile).
ALTER TABLE repositories ADD COLUMN IF NOT EXISTS source JSONB;
