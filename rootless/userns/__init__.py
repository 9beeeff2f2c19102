"""User namespaces: which ids a user may map, and running work inside a namespace."""
