# exlessd configuration. See the README for every setting.
#
# This is the example the package installs, and it points at example hosts.
# Until you make it yours, exlessd runs "not configured": it starts, answers
# every request with an error saying so, and says so in `systemctl status`.
# Set the values below for this site, check them with
# `exlessd config validate --online`, then delete the next line and run
# `systemctl restart exlessd`.
configured = false

# Under systemd the socket comes from exlessd.socket, which sets the same path,
# mode and group; these settings apply when exlessd runs on its own.
socket       = "/run/exless/exlessd.sock"
socket_mode  = "0660"
socket_group = "exless"

exceptionless {
  url   = "https://api.exceptionless.com"
  email = "ops@example.com"
  # A bare name is a systemd credential (LoadCredential= in exlessd.service):
  # put the password in /etc/exless/credentials/exceptionless-password.
  password_file = "exceptionless-password"
  # Or keep the password in Vault, under vault.path, so that
  # "exlessctl rotate --scope user --password" can change it:
  # password_vault_key = "account"
}

vault {
  address    = "https://vault.example.com:8200"
  # The credential /etc/exless/credentials/vault-token.
  token_file = "vault-token"
  mount      = "secret"
  path       = "exless/prod"
}

# What one peer, or all of them, can make exlessd do; the defaults suit a
# host's scripts and units. The README explains each; uncomment to change.
# limits {
#   max_connections         = 256
#   max_connections_per_uid = 64
#   requests_per_second     = 100   # per uid and unit
#   burst                   = 200
#   header_timeout          = "5s"
#   request_timeout         = "10s"
#   write_timeout           = "1m"
#   idle_timeout            = "1m"
#   max_header_bytes        = 16384
#   max_body_bytes          = 4096
#   exe_hash_concurrency    = 2
# }

# Default deny: nothing is handed out until a rule says so.
rule "ops" {
  users    = ["root"]
  scopes   = ["user", "client"]
  projects = ["*"]
  actions  = ["token", "status", "reload"]
}

# Prometheus metrics for a scraper on a loopback port (off by default; any
# local user can read them, and they hold no secrets). Peers granted the
# "metrics" or "status" action can always GET /v1/metrics on the socket.
# metrics {
#   listen = "127.0.0.1:9464"
# }
