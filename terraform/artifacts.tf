# The bucket that holds the gateway binary (uploaded by the caller, under gateway/).

resource "aws_s3_bucket" "artifacts" {
  #checkov:skip=CKV_AWS_18:holds only the gateway binary, written by the deployer and read by the node role; no log bucket in the stack (the provisioner's neither)
  #checkov:skip=CKV_AWS_21:objects are named by their sha256 and never overwritten, so versions add nothing (the provisioner's bucket is the same)
  #checkov:skip=CKV_AWS_144:the DR region's stack has a bucket of its own (the name holds the region) and the binary is uploaded there; replication would add nothing
  #checkov:skip=CKV_AWS_145:SSE-S3 (AES256), as the provisioner sets it: the node role reads the object without a KMS key grant
  #checkov:skip=CKV2_AWS_61:a handful of binaries named by sha256, kept for rollback; the provisioner's bucket has no lifecycle either
  #checkov:skip=CKV2_AWS_62:nothing reacts to uploads; nodes fetch the binary at boot
  bucket        = "${local.name}-artifacts-${data.aws_caller_identity.current.account_id}-${data.aws_region.current.name}"
  force_destroy = var.artifacts_force_destroy
  tags          = merge(local.tags, { Name = "${local.name}-artifacts" })
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  bucket                  = aws_s3_bucket.artifacts.id
  block_public_acls       = true
  ignore_public_acls      = true
  block_public_policy     = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}
