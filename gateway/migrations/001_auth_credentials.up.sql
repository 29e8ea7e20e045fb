-- 001_auth_credentials: the consumer credentials of key-auth and basic-auth,
-- and acl's groups, with Kong's table names. Each belongs to a consumer and
-- goes with it.

CREATE TABLE keyauth_credentials (
  seq         bigserial UNIQUE,
  id          uuid PRIMARY KEY,
  consumer_id uuid NOT NULL REFERENCES consumers (id) ON DELETE CASCADE,
  key         text NOT NULL UNIQUE,
  tags        text[],
  entity      jsonb NOT NULL
);
CREATE INDEX keyauth_credentials_consumer_id_idx ON keyauth_credentials (consumer_id);

CREATE TABLE basicauth_credentials (
  seq         bigserial UNIQUE,
  id          uuid PRIMARY KEY,
  consumer_id uuid NOT NULL REFERENCES consumers (id) ON DELETE CASCADE,
  username    text NOT NULL UNIQUE,
  tags        text[],
  entity      jsonb NOT NULL
);
CREATE INDEX basicauth_credentials_consumer_id_idx ON basicauth_credentials (consumer_id);

CREATE TABLE acls (
  seq         bigserial UNIQUE,
  id          uuid PRIMARY KEY,
  consumer_id uuid NOT NULL REFERENCES consumers (id) ON DELETE CASCADE,
  "group"     text NOT NULL,
  tags        text[],
  entity      jsonb NOT NULL,
  -- One membership per consumer and group, as Kong's cache_key.
  UNIQUE (consumer_id, "group")
);
