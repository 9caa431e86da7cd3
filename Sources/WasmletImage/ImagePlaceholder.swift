// Placeholder: replaced by the image writer.
