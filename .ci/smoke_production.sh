#!/usr/bin/env bash
# The production stack, started as README "Deployment" tells an operator, and exercised:
# gunicorn serving config.wsgi, a Celery worker on Redis, PostgreSQL, S3 (moto's server standing
# in for it). One delivery is uploaded through the API, ingested by the worker, published,
# exported and downloaded through the presigned S3 link; then the worker is killed (SIGKILL)
# while it ingests a second delivery, restarted, and that delivery still completes.
#
# Needs PostgreSQL and Redis on 127.0.0.1 (.ci/run starts them). Variables:
#   SMOKE_DB (registry_smoke), SMOKE_REDIS (redis://127.0.0.1:6379/3): dropped and flushed first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, for gunicorn and celery too
BIN=$(dirname "$PY")
SMOKE_DB=${SMOKE_DB:-registry_smoke}
SMOKE_REDIS=${SMOKE_REDIS:-redis://127.0.0.1:6379/3}

scratch=$(mktemp -d)
pids=()
cleanup() {
  status=$?
  if [ "$status" != 0 ]; then
    for log in worker gunicorn; do echo "---- $log.log (last lines)"; tail -n 40 "$scratch/$log.log" 2>/dev/null || true; done
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.2; done; echo "port $1 never opened"; return 1; }

echo "== $(date +%T) S3 (moto server) and a bucket"
s3_port=$(free_port)
"$BIN/moto_server" -H 127.0.0.1 -p "$s3_port" >"$scratch/moto.log" 2>&1 & pids+=($!)
wait_port "$s3_port"

# ---- the production environment (README, Deployment) ---------------------------------------
"$PY" -c 'import secrets; print(secrets.token_urlsafe(64))' >"$scratch/secret-key"
"$PY" - "$scratch/ledger-key.pem" <<'PY'
import sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
pem = Ed25519PrivateKey.generate().private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)
open(sys.argv[1], "wb").write(pem)
PY
export DEBUG=false HTTPS=true ALLOWED_HOSTS=127.0.0.1,localhost
export SECRET_KEY_FILE="$scratch/secret-key" LEDGER_SIGNING_KEY_FILE="$scratch/ledger-key.pem"
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$SMOKE_DB"
export CELERY_BROKER_URL="$SMOKE_REDIS" CACHE_URL="$SMOKE_REDIS"
export STORAGE_BACKEND=s3 AWS_S3_ENDPOINT_URL="http://127.0.0.1:$s3_port" AWS_STORAGE_BUCKET_NAME=registry
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_S3_REGION_NAME=us-east-1
export VAR_DIR="$scratch/var"
# The broker re-delivers a task whose worker died once this has passed; production sets it
# above the longest ingest (default DELIVERY_MAX_INGEST_SECONDS + 1 h). Short here, so the
# restarted worker gets the killed ingest back within the test.
export CELERY_VISIBILITY_TIMEOUT=${CELERY_VISIBILITY_TIMEOUT:-15}
export CELERY_UNACKED_RESTORE_INTERVAL=2 CELERY_UNACKED_RESTORE_THROTTLE=1
unset GENERATE_SECRETS

"$PY" -c "import boto3; boto3.client('s3', endpoint_url='$AWS_S3_ENDPOINT_URL', region_name='us-east-1').create_bucket(Bucket='registry')"
redis-cli -u "$SMOKE_REDIS" flushdb >/dev/null
dropdb -h 127.0.0.1 -U postgres --if-exists --force "$SMOKE_DB"  # a session left by an earlier, killed run must not stop this one
createdb -h 127.0.0.1 -U postgres "$SMOKE_DB"

echo "== $(date +%T) check --deploy, migrate"
"$PY" manage.py check --deploy --tag security --fail-level WARNING  # not one security warning
"$PY" manage.py migrate --noinput -v0
setup=$("$PY" manage.py shell -c "exec(open('.ci/smoke_setup.py').read())" | tail -n1)
token=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["token"])' "$setup")
slug=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["dataset"])' "$setup")

echo "== $(date +%T) gunicorn and a Celery worker"
web_port=$(free_port)
"$BIN/gunicorn" config.wsgi --bind "127.0.0.1:$web_port" --workers 2 --access-logfile - >"$scratch/gunicorn.log" 2>&1 & pids+=($!)
start_worker() {
  # --pool solo: the task runs in this very process, so a SIGKILL kills the ingest mid-way.
  "$BIN/celery" -A config worker --pool solo --loglevel INFO >>"$scratch/worker.log" 2>&1 &
  worker=$!; pids+=("$worker")
}
start_worker
wait_port "$web_port"
base="http://127.0.0.1:$web_port"

echo "== $(date +%T) one delivery: upload, ingest (worker), publish, export, presigned download"
"$PY" .ci/smoke_driver.py first "$base" "$token" "$slug"

echo "== $(date +%T) a second delivery; the worker is killed while it ingests, then restarted"
delivery=$("$PY" .ci/smoke_driver.py upload "$base" "$token" "$slug" 300)
"$PY" .ci/smoke_driver.py wait "$base" "$token" "$delivery" validating 60
kill -KILL "$worker"
wait "$worker" 2>/dev/null || true
state=$("$PY" .ci/smoke_driver.py wait "$base" "$token" "$delivery" pending 5)
echo "worker killed; delivery $delivery is: $state"
case "$state" in ingested*) echo "the ingest finished before the kill: nothing was interrupted"; exit 1;; esac
start_worker
"$PY" .ci/smoke_driver.py wait "$base" "$token" "$delivery" ingested 90
"$PY" manage.py shell -c "
from django.core.files.storage import default_storage
from marketplace.models import Delivery
d = Delivery.objects.get(pk=$delivery)
keys = set(d.version.items.values_list('storage_key', flat=True))
missing = [k for k in keys if not default_storage.exists(k)]
assert len(keys) == 300 and not missing, (len(keys), missing[:3])
print(f'delivery {d.pk} completed after the restart: version {d.version.number}, {len(keys)} images, none missing')
"
echo "== $(date +%T) production smoke passed"
