"""Domain services: one function per command; each commits once or raises."""
