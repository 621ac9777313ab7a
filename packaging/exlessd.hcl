# exlessd configuration. See the README for every setting.
# The password and Vault token come in as systemd credentials (see
# LoadCredential= in exlessd.service); put them in /etc/exless/credentials/.

socket       = "/run/exless/exlessd.sock"
socket_mode  = "0660"
socket_group = "exless"

exceptionless {
  url           = "https://api.exceptionless.com"
  email         = "ops@example.com"
  password_file = "/run/credentials/exlessd.service/exceptionless-password"
}

vault {
  address    = "https://vault.example.com:8200"
  token_file = "/run/credentials/exlessd.service/vault-token"
  mount      = "secret"
  path       = "exless/prod"
}

# Default deny: nothing is handed out until a rule says so.
rule "ops" {
  users    = ["root"]
  scopes   = ["user", "client"]
  projects = ["*"]
}
