# Shared by footprint.sh and footprint-side.sh: a fleet CA, one agent's certificate and the
# configs of a local control plane and one agent at a 1 s interval, in $work. Needs $work, and
# $cp (the control plane's binary).
$cp pki init --dir "$work/pki" >/dev/null
$cp pki issue-agent --dir "$work/pki" --id bench-agent --out "$work/agent" >/dev/null
cat > "$work/cp.toml" <<TOML
grpc_listen = "127.0.0.1:17443"
http_listen = "127.0.0.1:18080"
data_dir = "$work"
[tls]
ca_cert = "$work/pki/ca.pem"
server_cert = "$work/pki/server.pem"
server_key = "$work/pki/server.key"
TOML
cat > "$work/agent.toml" <<TOML
[agent]
data_dir = "$work/agent/data"
interval_ms = 1000
[server]
endpoints = ["127.0.0.1:17443"]
server_name = "localhost"
ca = "$work/agent/ca.pem"
cert = "$work/agent/agent.pem"
key = "$work/agent/agent.key"
TOML
