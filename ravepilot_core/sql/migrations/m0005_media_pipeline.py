"""The media pipeline: normalised clips with posters and failure reasons, and renders."""

ID = "0005_media_pipeline"

STATEMENTS = (
    "ALTER TABLE rp_clips ADD COLUMN normalised_key TEXT",
    "ALTER TABLE rp_clips ADD COLUMN poster_key TEXT",
    "ALTER TABLE rp_clips ADD COLUMN error TEXT",
    """CREATE TABLE rp_renders (
        id VARCHAR(40) PRIMARY KEY,
        workspace_id VARCHAR(40) NOT NULL REFERENCES rp_workspaces (id),
        submission_id VARCHAR(40) NOT NULL REFERENCES rp_submissions (id),
        format VARCHAR(8) NOT NULL,
        status VARCHAR(20) NOT NULL,
        clip_ids TEXT NOT NULL,
        duration_ms BIGINT,
        media_key TEXT,
        error TEXT,
        created_at BIGINT NOT NULL,
        finished_at BIGINT)""",
    "CREATE INDEX rp_renders_submission ON rp_renders (submission_id, id)",
)
