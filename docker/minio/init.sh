# One-shot setup of the audit archive's bucket in MinIO (compose service `minio-init`, image
# minio/mc). Safe to run again: every step accepts what a previous run made.
#
# - bucket payflow-audit with Object Lock (and so versioning), and a default COMPLIANCE
#   retention of AUDIT_RETENTION_DAYS (7 years by default, the seed's retention): no one,
#   not even the root user, can delete or overwrite a *version* of a segment before then.
#   A DELETE without a version id still succeeds: it adds a delete marker that hides the
#   segment from a plain GET while its locked version stays (docker/README.md, the archive);
# - payflow-reader (web, worker, sequencer: auditors' pages and verification read
#   segments) may only list and read;
# - payflow-archiver (the archiver service) may also write new segments and delete those
#   past their retention (the purge); the lock refuses anything earlier.
set -eu

secret() { tr -d '\r\n' < "/run/secrets/$1"; }

mc alias set local http://minio:9000 "$S3_ROOT_USER" "$(secret s3_root_password)" >/dev/null
mc mb --ignore-existing --with-lock local/payflow-audit
mc retention set --default COMPLIANCE "${AUDIT_RETENTION_DAYS}d" local/payflow-audit

bucket='"arn:aws:s3:::payflow-audit"'
objects='"arn:aws:s3:::payflow-audit/*"'
cat > /tmp/payflow-reader.json <<JSON
{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": [$bucket]},
  {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [$objects]}
]}
JSON
cat > /tmp/payflow-archiver.json <<JSON
{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": [$bucket]},
  {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], "Resource": [$objects]}
]}
JSON

for account in payflow-reader payflow-archiver; do
    case "$account" in
        payflow-reader) key=s3_reader_secret ;;
        *) key=s3_archiver_secret ;;
    esac
    mc admin policy create local "$account" "/tmp/$account.json"
    mc admin user add local "$account" "$(secret "$key")"
    # Already attached on a second run: mc says so and exits non-zero; that is success.
    mc admin policy attach local "$account" --user "$account" 2>/tmp/attach.err \
        || grep -qi "already" /tmp/attach.err
done
echo "audit archive bucket ready"
