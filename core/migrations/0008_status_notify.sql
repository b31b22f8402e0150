-- 0008: every change of an asset's per-model status is announced on the channel 'argus_asset_status'
-- (NOTIFY is transactional: listeners hear it only when the sink's transaction commits, never twice for
-- one commit, never for a rolled-back write). The web app's live upload page listens (retrieval/status_feed.py).
CREATE OR REPLACE FUNCTION argus_notify_asset_status() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('argus_asset_status', json_build_object(
        'asset_id', NEW.asset_id, 'model', NEW.model, 'status', NEW.status,
        'reason', left(NEW.reason, 500))::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS asset_model_status_notify ON asset_model_status;
CREATE TRIGGER asset_model_status_notify
    AFTER INSERT OR UPDATE ON asset_model_status
    FOR EACH ROW EXECUTE FUNCTION argus_notify_asset_status();
