-- 0004: Feed poller (producers/feed_poller.py): conditional-GET validators per feed, items already seen
CREATE TABLE feeds (
    url            text PRIMARY KEY,
    etag           text,
    last_modified  text,
    last_polled_at timestamptz,
    last_status    integer,
    last_error     text
);
CREATE TABLE feed_items (
    feed_url     text NOT NULL,
    guid         text NOT NULL,               -- entry id, else link, else a hash of the entry
    content_hash text,                        -- sha256 of the media = the asset id
    asset_id     text,
    media_url    text,
    outcome      text NOT NULL,               -- ingested | duplicate | rejected: <reason>
    seen_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (feed_url, guid)
);
CREATE INDEX feed_items_content ON feed_items (content_hash);
