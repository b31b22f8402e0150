"""People on the read side: persons, their faces and assets, "more photos of this face" (queries.py), and
user curation with its audit log and undo (curation.py). The sink side is sinks/people_sink.py."""
