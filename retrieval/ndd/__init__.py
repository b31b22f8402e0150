"""Near-duplicate detection (NDD): perceptual hashes, Hamming index, image/video matching, groups.

Kept apart from the embedding kNN ("similar", retrieval/search): a near-duplicate is the same picture or
footage after edits (re-encoding, rescaling, cropping, overlays), not merely the same subject.
"""
