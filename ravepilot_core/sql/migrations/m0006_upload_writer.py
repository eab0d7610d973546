"""Uploads remember which request may move them on (two PATCHes racing from two processes)."""

ID = "0006_upload_writer"

STATEMENTS = ("ALTER TABLE rp_uploads ADD COLUMN writer VARCHAR(40)",)
