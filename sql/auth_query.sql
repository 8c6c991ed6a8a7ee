-- auth_query.sql — the lookup function pgfunnel's auth_query calls.
--
-- pgfunnel (like PgBouncer) can fetch a client's password secret from the
-- server instead of from auth_file: it logs in as auth_user and runs
-- auth_query.  Reading pg_authid needs superuser rights, so the query goes
-- through this SECURITY DEFINER function owned by a superuser; the auth_user
-- itself stays unprivileged.
--
-- Install, as a superuser, in the database of the [databases] entry that
-- pgfunnel's auth_dbname names (or else in each client's target database):
--
--     psql -U postgres -d mydb -f sql/auth_query.sql
--
-- Matching pgfunnel configuration:
--
--     auth_user  = pgfunnel_auth
--     auth_query = SELECT usename, passwd FROM pgfunnel.get_auth($1)
--
-- The auth_user needs only CONNECT on the database and EXECUTE on this
-- function (plus USAGE on the schema to reach it): no superuser, no SELECT
-- on any catalog.
--
-- The function returns no row for an unknown role or one that cannot log
-- in, and a NULL passwd when the role has no password or its password has
-- expired (VALID UNTIL in the past), so pgfunnel refuses the login just as
-- PostgreSQL itself would.

CREATE SCHEMA IF NOT EXISTS pgfunnel;

CREATE OR REPLACE FUNCTION pgfunnel.get_auth(p_usename text)
RETURNS TABLE (usename name, passwd text)
LANGUAGE sql
SECURITY DEFINER
-- A fixed search_path: a SECURITY DEFINER function must not resolve names
-- through the caller's path (it could shadow pg_authid or now()).
SET search_path = pg_catalog
AS $$
    SELECT rolname,
           CASE WHEN rolvaliduntil IS NULL OR rolvaliduntil > now()
                THEN rolpassword
           END
    FROM pg_authid
    WHERE rolname = p_usename
      AND rolcanlogin
$$;

-- Functions are executable by PUBLIC by default: take that away, so that only
-- the auth_user can read password secrets through this function.
REVOKE ALL ON FUNCTION pgfunnel.get_auth(text) FROM PUBLIC;

-- Then grant it to the auth_user (create the role first if needed):
--
--     CREATE ROLE pgfunnel_auth LOGIN PASSWORD '...';
--     GRANT CONNECT ON DATABASE mydb TO pgfunnel_auth;
--     GRANT USAGE ON SCHEMA pgfunnel TO pgfunnel_auth;
--     GRANT EXECUTE ON FUNCTION pgfunnel.get_auth(text) TO pgfunnel_auth;
