// Placeholder until the systemd glue lands.
