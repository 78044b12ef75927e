-- EphemeralOrleans PostgreSQL schema: the tables and OrleansQuery rows that the Orleans 10 ADO.NET clustering,
-- grain storage and reminder providers look up by key. Written for this project; applied idempotently at start
-- (Storage:InitializeSchema) inside one transaction under an advisory lock, so concurrent silos may start at once.
-- Re-running it replaces every query text and function, which is how the schema is upgraded.

CREATE TABLE IF NOT EXISTS orleansquery
(
    querykey  varchar(64)   NOT NULL PRIMARY KEY,
    querytext varchar(8000) NOT NULL
);

CREATE TABLE IF NOT EXISTS eo_schema_version
(
    version    integer     NOT NULL PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

------------------------------------------------------------------------------------------------------------------------
-- Clustering: one version row per cluster, one row per silo incarnation.
------------------------------------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS orleansmembershipversiontable
(
    deploymentid varchar(150)   NOT NULL PRIMARY KEY,
    timestamp    timestamptz(3) NOT NULL DEFAULT now(),
    version      integer        NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS orleansmembershiptable
(
    deploymentid varchar(150)   NOT NULL REFERENCES orleansmembershipversiontable (deploymentid),
    address      varchar(45)    NOT NULL,
    port         integer        NOT NULL,
    generation   integer        NOT NULL,
    siloname     varchar(150)   NOT NULL,
    hostname     varchar(150)   NOT NULL,
    status       integer        NOT NULL,
    proxyport    integer        NULL,
    suspecttimes varchar(8000)  NULL,
    starttime    timestamptz(3) NOT NULL,
    iamalivetime timestamptz(3) NOT NULL,
    PRIMARY KEY (deploymentid, address, port, generation)
);

-- Conditional writes: the table version must still be the one the silo read, else nothing changes and 0 is returned.
CREATE OR REPLACE FUNCTION eo_insert_membership(
    _deploymentid varchar, _address varchar, _port integer, _generation integer, _siloname varchar,
    _hostname varchar, _status integer, _proxyport integer, _starttime timestamptz, _iamalivetime timestamptz,
    _version integer)
RETURNS TABLE (row_count integer) LANGUAGE plpgsql AS $$
DECLARE
    _rows integer;
BEGIN
    BEGIN
        UPDATE orleansmembershipversiontable
           SET version = version + 1, timestamp = now()
         WHERE deploymentid = _deploymentid AND version = _version;
        GET DIAGNOSTICS _rows = ROW_COUNT;
        IF _rows = 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'EO001';
        END IF;

        INSERT INTO orleansmembershiptable
            (deploymentid, address, port, generation, siloname, hostname, status, proxyport, starttime, iamalivetime)
        VALUES
            (_deploymentid, _address, _port, _generation, _siloname, _hostname, _status, _proxyport, _starttime, _iamalivetime)
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS _rows = ROW_COUNT;
        IF _rows = 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'EO001';
        END IF;
    EXCEPTION WHEN SQLSTATE 'EO001' THEN
        -- The block's savepoint undoes the version bump.
        RETURN QUERY SELECT 0;
        RETURN;
    END;
    RETURN QUERY SELECT 1;
END
$$;

CREATE OR REPLACE FUNCTION eo_update_membership(
    _deploymentid varchar, _address varchar, _port integer, _generation integer, _status integer,
    _suspecttimes varchar, _iamalivetime timestamptz, _version integer)
RETURNS TABLE (row_count integer) LANGUAGE plpgsql AS $$
DECLARE
    _rows integer;
BEGIN
    BEGIN
        UPDATE orleansmembershipversiontable
           SET version = version + 1, timestamp = now()
         WHERE deploymentid = _deploymentid AND version = _version;
        GET DIAGNOSTICS _rows = ROW_COUNT;
        IF _rows = 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'EO001';
        END IF;

        UPDATE orleansmembershiptable
           SET status = _status, suspecttimes = _suspecttimes, iamalivetime = _iamalivetime
         WHERE deploymentid = _deploymentid AND address = _address AND port = _port AND generation = _generation;
        GET DIAGNOSTICS _rows = ROW_COUNT;
        IF _rows = 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'EO001';
        END IF;
    EXCEPTION WHEN SQLSTATE 'EO001' THEN
        RETURN QUERY SELECT 0;
        RETURN;
    END;
    RETURN QUERY SELECT 1;
END
$$;

INSERT INTO orleansquery (querykey, querytext) VALUES
('InsertMembershipVersionKey', '
    WITH inserted AS (
        INSERT INTO orleansmembershipversiontable (deploymentid) VALUES (@DeploymentId)
        ON CONFLICT DO NOTHING RETURNING 1)
    SELECT count(*)::integer FROM inserted;'),
('InsertMembershipKey', '
    SELECT row_count FROM eo_insert_membership(@DeploymentId, @Address, @Port, @Generation, @SiloName, @HostName,
        @Status, @ProxyPort, @StartTime, @IAmAliveTime, @Version);'),
('UpdateMembershipKey', '
    SELECT row_count FROM eo_update_membership(@DeploymentId, @Address, @Port, @Generation, @Status, @SuspectTimes,
        @IAmAliveTime, @Version);'),
('UpdateIAmAlivetimeKey', '
    UPDATE orleansmembershiptable SET iamalivetime = @IAmAliveTime
     WHERE deploymentid = @DeploymentId AND address = @Address AND port = @Port AND generation = @Generation;'),
('MembershipReadRowKey', '
    SELECT v.deploymentid AS DeploymentId, m.address AS Address, m.port AS Port, m.generation AS Generation,
           m.siloname AS SiloName, m.hostname AS HostName, m.status AS Status, m.proxyport AS ProxyPort,
           m.suspecttimes AS SuspectTimes, m.starttime AS StartTime, m.iamalivetime AS IAmAliveTime, v.version AS Version
      FROM orleansmembershipversiontable v
      LEFT JOIN orleansmembershiptable m
        ON m.deploymentid = v.deploymentid AND m.address = @Address AND m.port = @Port AND m.generation = @Generation
     WHERE v.deploymentid = @DeploymentId;'),
('MembershipReadAllKey', '
    SELECT v.deploymentid AS DeploymentId, m.address AS Address, m.port AS Port, m.generation AS Generation,
           m.siloname AS SiloName, m.hostname AS HostName, m.status AS Status, m.proxyport AS ProxyPort,
           m.suspecttimes AS SuspectTimes, m.starttime AS StartTime, m.iamalivetime AS IAmAliveTime, v.version AS Version
      FROM orleansmembershipversiontable v
      LEFT JOIN orleansmembershiptable m ON m.deploymentid = v.deploymentid
     WHERE v.deploymentid = @DeploymentId;'),
('GatewaysQueryKey', '
    SELECT address AS Address, proxyport AS ProxyPort, generation AS Generation
      FROM orleansmembershiptable
     WHERE deploymentid = @DeploymentId AND status = @Status AND proxyport > 0;'),
('DeleteMembershipTableEntriesKey', '
    DELETE FROM orleansmembershiptable WHERE deploymentid = @DeploymentId;
    DELETE FROM orleansmembershipversiontable WHERE deploymentid = @DeploymentId;'),
-- Only rows of silos declared dead (status 6) are ever cleaned up.
('CleanupDefunctSiloEntriesKey', '
    DELETE FROM orleansmembershiptable
     WHERE deploymentid = @DeploymentId AND iamalivetime < @IAmAliveTime AND starttime < @IAmAliveTime AND status = 6;'),
('CleanupDefunctSiloEntryKey', '
    DELETE FROM orleansmembershiptable
     WHERE deploymentid = @DeploymentId AND status = 6 AND address = @Address AND port = @Port
       AND generation = @Generation AND iamalivetime = @IAmAliveTime AND starttime = @StartTime
       AND suspecttimes IS NOT DISTINCT FROM @SuspectTimes;')
ON CONFLICT (querykey) DO UPDATE SET querytext = excluded.querytext;

------------------------------------------------------------------------------------------------------------------------
-- Grain storage: one row per grain state, optimistic concurrency on version.
------------------------------------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS orleansstorage
(
    grainidhash            integer       NOT NULL,
    grainidn0              bigint        NOT NULL,
    grainidn1              bigint        NOT NULL,
    graintypehash          integer       NOT NULL,
    graintypestring        varchar(512)  NOT NULL,
    grainidextensionstring varchar(512)  NULL,
    serviceid              varchar(150)  NOT NULL,
    payloadbinary          bytea         NULL,
    modifiedon             timestamptz   NOT NULL DEFAULT now(),
    version                integer       NOT NULL
);

-- Unique, so that two activations racing to insert the same state cannot both succeed.
CREATE UNIQUE INDEX IF NOT EXISTS ux_orleansstorage_grain ON orleansstorage
    (grainidhash, graintypehash, serviceid, grainidn0, grainidn1, graintypestring, coalesce(grainidextensionstring, ''));

-- One plain statement (no PL/pgSQL), so that its plan is cached with the connection's prepared statements.
-- With a version: update only if it is still that version. Without: insert only if no row exists yet.
-- An unchanged version, or NULL, tells Orleans the write lost a race (InconsistentStateException).
DROP FUNCTION IF EXISTS eo_write_to_storage(integer, bigint, bigint, integer, varchar, varchar, varchar, integer, bytea);

INSERT INTO orleansquery (querykey, querytext) VALUES
('WriteToStorageKey', '
    WITH updated AS (
        UPDATE orleansstorage
           SET payloadbinary = @PayloadBinary, modifiedon = now(), version = version + 1
         WHERE @GrainStateVersion::integer IS NOT NULL
           AND grainidhash = @GrainIdHash AND graintypehash = @GrainTypeHash AND serviceid = @ServiceId
           AND grainidn0 = @GrainIdN0 AND grainidn1 = @GrainIdN1 AND graintypestring = @GrainTypeString
           AND coalesce(grainidextensionstring, '''') = coalesce(@GrainIdExtensionString, '''')
           AND version = @GrainStateVersion::integer
        RETURNING version),
    inserted AS (
        INSERT INTO orleansstorage (grainidhash, grainidn0, grainidn1, graintypehash, graintypestring,
                                    grainidextensionstring, serviceid, payloadbinary, version)
        SELECT @GrainIdHash, @GrainIdN0, @GrainIdN1, @GrainTypeHash, @GrainTypeString,
               @GrainIdExtensionString, @ServiceId, @PayloadBinary, 1
         WHERE @GrainStateVersion::integer IS NULL
        ON CONFLICT DO NOTHING
        RETURNING version)
    SELECT coalesce((SELECT version FROM updated), (SELECT version FROM inserted), @GrainStateVersion::integer)
           AS NewGrainStateVersion;'),
('ReadFromStorageKey', '
    SELECT payloadbinary AS PayloadBinary, version AS Version
      FROM orleansstorage
     WHERE grainidhash = @GrainIdHash AND graintypehash = @GrainTypeHash AND serviceid = @ServiceId
       AND grainidn0 = @GrainIdN0 AND grainidn1 = @GrainIdN1 AND graintypestring = @GrainTypeString
       AND coalesce(grainidextensionstring, '''') = coalesce(@GrainIdExtensionString, '''');'),
('ClearStorageKey', '
    UPDATE orleansstorage SET payloadbinary = NULL, modifiedon = now(), version = version + 1
     WHERE grainidhash = @GrainIdHash AND graintypehash = @GrainTypeHash AND serviceid = @ServiceId
       AND grainidn0 = @GrainIdN0 AND grainidn1 = @GrainIdN1 AND graintypestring = @GrainTypeString
       AND coalesce(grainidextensionstring, '''') = coalesce(@GrainIdExtensionString, '''')
       AND version = @GrainStateVersion
    RETURNING version AS NewGrainStateVersion;'),
('DeleteStorageKey', '
    DELETE FROM orleansstorage
     WHERE grainidhash = @GrainIdHash AND graintypehash = @GrainTypeHash AND serviceid = @ServiceId
       AND grainidn0 = @GrainIdN0 AND grainidn1 = @GrainIdN1 AND graintypestring = @GrainTypeString
       AND coalesce(grainidextensionstring, '''') = coalesce(@GrainIdExtensionString, '''')
       AND version = @GrainStateVersion
    RETURNING version + 1 AS NewGrainStateVersion;')
ON CONFLICT (querykey) DO UPDATE SET querytext = excluded.querytext;

------------------------------------------------------------------------------------------------------------------------
-- Reminders: read by ranges of grain hash, so (serviceid, grainhash) is indexed.
------------------------------------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS orleansreminderstable
(
    serviceid    varchar(150)   NOT NULL,
    grainid      varchar(150)   NOT NULL,
    remindername varchar(150)   NOT NULL,
    starttime    timestamptz(3) NOT NULL,
    period       bigint         NOT NULL,
    grainhash    integer        NOT NULL,
    version      integer        NOT NULL,
    PRIMARY KEY (serviceid, grainid, remindername)
);

CREATE INDEX IF NOT EXISTS ix_orleansreminderstable_hash ON orleansreminderstable (serviceid, grainhash);

INSERT INTO orleansquery (querykey, querytext) VALUES
('UpsertReminderRowKey', '
    INSERT INTO orleansreminderstable (serviceid, grainid, remindername, starttime, period, grainhash, version)
    VALUES (@ServiceId, @GrainId, @ReminderName, @StartTime, @Period::bigint, @GrainHash, 0)
    ON CONFLICT (serviceid, grainid, remindername) DO UPDATE
       SET starttime = excluded.starttime, period = excluded.period, grainhash = excluded.grainhash,
           version = orleansreminderstable.version + 1
    RETURNING version AS Version;'),
('ReadReminderRowsKey', '
    SELECT grainid AS GrainId, remindername AS ReminderName, starttime AS StartTime, period AS Period, version AS Version
      FROM orleansreminderstable
     WHERE serviceid = @ServiceId AND grainid = @GrainId;'),
('ReadReminderRowKey', '
    SELECT grainid AS GrainId, remindername AS ReminderName, starttime AS StartTime, period AS Period, version AS Version
      FROM orleansreminderstable
     WHERE serviceid = @ServiceId AND grainid = @GrainId AND remindername = @ReminderName;'),
('ReadRangeRows1Key', '
    SELECT grainid AS GrainId, remindername AS ReminderName, starttime AS StartTime, period AS Period, version AS Version
      FROM orleansreminderstable
     WHERE serviceid = @ServiceId AND grainhash > @BeginHash AND grainhash <= @EndHash;'),
('ReadRangeRows2Key', '
    SELECT grainid AS GrainId, remindername AS ReminderName, starttime AS StartTime, period AS Period, version AS Version
      FROM orleansreminderstable
     WHERE serviceid = @ServiceId AND (grainhash > @BeginHash OR grainhash <= @EndHash);'),
('DeleteReminderRowKey', '
    WITH deleted AS (
        DELETE FROM orleansreminderstable
         WHERE serviceid = @ServiceId AND grainid = @GrainId AND remindername = @ReminderName AND version = @Version
        RETURNING 1)
    SELECT count(*)::integer FROM deleted;'),
('DeleteReminderRowsKey', '
    DELETE FROM orleansreminderstable WHERE serviceid = @ServiceId;')
ON CONFLICT (querykey) DO UPDATE SET querytext = excluded.querytext;

------------------------------------------------------------------------------------------------------------------------
-- The project's own: each tailnet's node registry, one row per node, written in batches by the tailnet grain.
------------------------------------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS eo_registry
(
    serviceid varchar(150) NOT NULL,
    tailnet   varchar(63)  NOT NULL,
    nodeid    varchar(64)  NOT NULL,
    view      jsonb        NOT NULL,
    epoch     integer      NOT NULL,
    PRIMARY KEY (serviceid, tailnet, nodeid)
);

INSERT INTO eo_schema_version (version) VALUES (1) ON CONFLICT DO NOTHING;

-- Version 2: a row's view carries its node's session epoch (version 1 kept it in the epoch column beside the view).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM eo_schema_version WHERE version = 2) THEN
        UPDATE eo_registry SET view = view || jsonb_build_object('sessionEpoch', epoch) WHERE NOT view ? 'sessionEpoch';
        ALTER TABLE eo_registry ALTER COLUMN epoch SET DEFAULT 0;
        INSERT INTO eo_schema_version (version) VALUES (2);
    END IF;
END $$;

------------------------------------------------------------------------------------------------------------------------
-- The project's own: which node key each OIDC ID token registered (by the token's hash), until the token expires.
------------------------------------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS eo_token_uses
(
    serviceid varchar(150) NOT NULL,
    replaykey varchar(64)  NOT NULL,
    nodekey   varchar(128) NOT NULL,
    expiresat timestamptz  NOT NULL,
    PRIMARY KEY (serviceid, replaykey)
);

CREATE INDEX IF NOT EXISTS ix_eo_token_uses_expiry ON eo_token_uses (serviceid, expiresat);

-- Version 3: token uses moved from a grain state per token (state name 'tokenUse', never pruned once its grain was
-- collected) to eo_token_uses. The old records are dropped (their payload is Orleans' binary format): a token used in
-- the hour before the upgrade may register one more node key until it expires.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM eo_schema_version WHERE version = 3) THEN
        DELETE FROM orleansstorage WHERE graintypestring = 'tokenUse';
        INSERT INTO eo_schema_version (version) VALUES (3);
    END IF;
END $$;

------------------------------------------------------------------------------------------------------------------------
-- The project's own: each tailnet's audit log, numbered per tailnet. 'once' makes a resumed step record itself once
-- (a removal finished by the reminder after a crash); retention deletes by time.
------------------------------------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS eo_events
(
    serviceid varchar(150) NOT NULL,
    tailnet   varchar(63)  NOT NULL,
    id        bigint       NOT NULL,
    time      timestamptz  NOT NULL,
    type      varchar(64)  NOT NULL,
    actor     varchar(200) NOT NULL,
    target    varchar(200) NOT NULL,
    nodeid    varchar(64)  NULL,
    data      jsonb        NOT NULL,
    once      varchar(200) NULL,
    PRIMARY KEY (serviceid, tailnet, id)
);

CREATE UNIQUE INDEX IF NOT EXISTS ux_eo_events_once ON eo_events (serviceid, tailnet, once) WHERE once IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_eo_events_node ON eo_events (serviceid, tailnet, nodeid, id) WHERE nodeid IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_eo_events_time ON eo_events (serviceid, time);
