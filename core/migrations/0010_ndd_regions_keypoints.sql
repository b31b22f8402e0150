-- 0010: the near-duplicate index's framing paths (docs/ndd.md "Paths"), written by the ndd sink in the same row
-- (and so in the same exactly-once transaction) as the PDQ hash it belongs to.
-- regions: [{box: [x0, y0, x1, y1] (fractions), hash: hex, quality}] - the content area without uniform margins
--          and the picture embedded in a screenshot (models/pdq/regions.py); frames: a letterboxed frame's content.
-- features: ORB keypoints + descriptors of a picture, packed (models/pdq/features.py: 16-byte header, then
--           4 bytes of coordinates and 32 of descriptor per keypoint; ~4.6 kB for 128 keypoints).

ALTER TABLE ndd_hashes ADD COLUMN regions jsonb NOT NULL DEFAULT '[]'::jsonb;
ALTER TABLE ndd_hashes ADD COLUMN features bytea;
ALTER TABLE ndd_frames ADD COLUMN regions jsonb NOT NULL DEFAULT '[]'::jsonb;
