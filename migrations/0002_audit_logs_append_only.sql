-- I3: audit entries are never changed. Row triggers refuse UPDATE and DELETE, a statement trigger refuses TRUNCATE
-- (TRUNCATE fires no row triggers). Only a superuser session with session_replication_role = replica bypasses them.

CREATE FUNCTION audit_logs_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_logs is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Audit entries can only be inserted.';
END;
$$;

CREATE TRIGGER audit_logs_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION audit_logs_refuse_change();

CREATE TRIGGER audit_logs_no_truncate
    BEFORE TRUNCATE ON audit_logs
    FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_refuse_change();
