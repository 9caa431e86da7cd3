// Placeholder until generated code lands.
