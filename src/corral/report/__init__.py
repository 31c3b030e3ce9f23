"""Reports for people: rich tables in the terminal."""
