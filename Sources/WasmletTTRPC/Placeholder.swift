// Placeholder until the ttrpc codec lands.
