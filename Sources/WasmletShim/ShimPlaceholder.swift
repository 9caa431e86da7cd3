// Placeholder: replaced by the shim implementation.
