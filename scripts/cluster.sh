#!/usr/bin/env bash
# The docker-compose topology as local processes: PostgreSQL, two standalone silos and a gateway in client mode.
# Runs in the foreground; Ctrl-C (or SIGTERM) stops everything, silos last, and removes the throwaway database.
#
#   scripts/cluster.sh                       # builds Release, a throwaway PostgreSQL, gateway on :8080 / :8081
#   EO_POSTGRES="Host=…;Username=…;Database=…" scripts/cluster.sh   # use an existing PostgreSQL instead
#
# Environment: EO_HTTP_PORT (8080), EO_GRPC_PORT (8081), EO_ADMIN_KEY (generated, printed), EO_CONFIGURATION
# (Release), EO_NO_BUILD=1 to use existing build output, EO_PG_PORT (55432), EO_SILO_PORTS ("11111 30000 11112 30001"),
# EO_METRICS_PORTS ("9464 9465"), EO_KEYRING_DIR (.keyring: the key ring certificate, made once by scripts/keyring-cert.sh),
# and any further gateway/silo setting as EO_SETTINGS="--Ephemeral:InactivityTimeout=00:05:00 …".
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
configuration="${EO_CONFIGURATION:-Release}"
http_port="${EO_HTTP_PORT:-8080}"
grpc_port="${EO_GRPC_PORT:-8081}"
pg_port="${EO_PG_PORT:-55432}"
read -r silo1_port silo1_gateway silo2_port silo2_gateway <<< "${EO_SILO_PORTS:-11111 30000 11112 30001}"
read -r metrics1 metrics2 <<< "${EO_METRICS_PORTS:-9464 9465}"
keyring_dir="${EO_KEYRING_DIR:-$root/.keyring}"
admin_key="${EO_ADMIN_KEY:-eo-admin-$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')}"
cluster_id="local-$(date +%s)"
read -r -a extra <<< "${EO_SETTINGS:-}"
pids=()
pgdata=""

log() { echo "[cluster] $*" >&2; }

stop() {
  trap - EXIT INT TERM
  log "stopping"
  # Gateway first, then the silos (they hand over activations and reminders), then PostgreSQL.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n "$pgdata" ]]; then
    as_postgres "$pg_bin/pg_ctl" -D "$pgdata" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$pgdata"
  fi
}
trap stop EXIT
trap 'stop; exit 0' INT TERM

as_postgres() {
  if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [[ -z "${EO_NO_BUILD:-}" ]]; then
  dotnet build "$root/src/Silo" -c "$configuration" -v q -nologo >&2
  dotnet build "$root/src/Gateway" -c "$configuration" -v q -nologo >&2
fi
silo_dll="$root/src/Silo/bin/$configuration/net10.0/EphemeralOrleans.Silo.dll"
gateway_dll="$root/src/Gateway/bin/$configuration/net10.0/EphemeralOrleans.Gateway.dll"

if [[ -n "${EO_POSTGRES:-}" ]]; then
  connection="$EO_POSTGRES"
else
  pg_bin="$(dirname "$(ls -1 /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")"
  pgdata="$(mktemp -d /tmp/eo-cluster-pg.XXXXXX)"
  [[ $EUID -eq 0 ]] && chown postgres "$pgdata"
  as_postgres "$pg_bin/initdb" -D "$pgdata" -U postgres -A trust >/dev/null
  as_postgres "$pg_bin/pg_ctl" -D "$pgdata" -w -l "$pgdata/server.log" \
    -o "-p $pg_port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$pgdata -c max_connections=300" start >/dev/null
  as_postgres "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres eo
  connection="Host=127.0.0.1;Port=$pg_port;Username=postgres;Database=eo"
  log "PostgreSQL on 127.0.0.1:$pg_port ($pgdata)"
fi

common=(--Storage:Provider=Postgres "--ConnectionStrings:Postgres=$connection" "--Cluster:Id=$cluster_id" "${extra[@]}")

start_silo() {
  dotnet "$silo_dll" "${common[@]}" --Silo:AdvertisedAddress=127.0.0.1 --Silo:Port="$1" --Silo:GatewayPort="$2" \
    --Silo:MetricsPort="$3" &
  pids=("$!" "${pids[@]}")
  log "silo on $1 (gateway $2, metrics http://127.0.0.1:$3/metrics), pid $!"
}
start_silo "$silo1_port" "$silo1_gateway" "$metrics1"
start_silo "$silo2_port" "$silo2_gateway" "$metrics2"

"$root/scripts/keyring-cert.sh" "$keyring_dir"
dotnet "$gateway_dll" "${common[@]}" --Gateway:Mode=Client "--Admin:ApiKey=$admin_key" \
  "--KeyRing:CertificatePath=$keyring_dir/keyring.pem" "--KeyRing:KeyPath=$keyring_dir/keyring.key" \
  --Kestrel:Endpoints:Http:Url="http://127.0.0.1:$http_port" --Kestrel:Endpoints:Grpc:Url="http://127.0.0.1:$grpc_port" &
pids=("$!" "${pids[@]}")

for _ in $(seq 1 240); do
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { log "process $pid exited before the cluster was ready"; exit 1; }
  done
  if curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1; then
    log "ready: HTTP http://127.0.0.1:$http_port  gRPC http://127.0.0.1:$grpc_port  dashboard http://127.0.0.1:$http_port/dashboard"
    log "admin key: $admin_key"
    echo "READY http://127.0.0.1:$http_port"
    wait -n "${pids[@]}" || true
    log "a process exited; stopping the rest"
    exit 1
  fi
  sleep 0.5
done
log "the gateway did not become ready"
exit 1
