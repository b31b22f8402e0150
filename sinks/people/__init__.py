"""People: faces assigned to persons (the people sink's rules, shared with curation in retrieval/people/)."""
