"""The recording portal: clips and their resumable uploads."""

ID = "0004_clips_and_uploads"

STATEMENTS = (
    """CREATE TABLE rp_clips (
        id VARCHAR(40) PRIMARY KEY,
        workspace_id VARCHAR(40) NOT NULL REFERENCES rp_workspaces (id),
        submission_id VARCHAR(40) NOT NULL REFERENCES rp_submissions (id),
        script_key VARCHAR(64) NOT NULL,
        status VARCHAR(20) NOT NULL,
        media_key TEXT NOT NULL,
        mime_type TEXT,
        size_bytes BIGINT,
        duration_ms BIGINT,
        transcript TEXT,
        review_status VARCHAR(20) NOT NULL,
        review_note TEXT,
        decided_at BIGINT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL)""",
    # One clip per prompt: a retake replaces the clip, and this makes a race between two
    # finishing uploads for the same prompt fail loudly instead of leaving two.
    "CREATE UNIQUE INDEX rp_clips_prompt ON rp_clips (submission_id, script_key)",
    """CREATE TABLE rp_uploads (
        id VARCHAR(40) PRIMARY KEY,
        workspace_id VARCHAR(40) NOT NULL REFERENCES rp_workspaces (id),
        submission_id VARCHAR(40) NOT NULL REFERENCES rp_submissions (id),
        script_key VARCHAR(64) NOT NULL,
        length BIGINT NOT NULL,
        upload_offset BIGINT NOT NULL,
        media_key TEXT NOT NULL,
        filename TEXT,
        filetype TEXT,
        expires_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        completed_at BIGINT,
        clip_id VARCHAR(40))""",
    "CREATE INDEX rp_uploads_submission ON rp_uploads (submission_id, id)",
    "CREATE INDEX rp_uploads_expiry ON rp_uploads (expires_at) WHERE completed_at IS NULL",
)
