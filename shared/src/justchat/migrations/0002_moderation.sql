-- Reactions: one row per (message, user, emote), so add and remove are idempotent.
CREATE TABLE reactions (
    message_id uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    username   text NOT NULL,
    emote      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, username, emote)
);

-- Mutes and bans per (channel, user). expires_at NULL means until lifted.
CREATE TABLE sanctions (
    channel_id integer NOT NULL REFERENCES channels (id),
    username   text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('mute', 'ban')),
    reason     text,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    PRIMARY KEY (channel_id, username, kind)
);
CREATE INDEX sanctions_expiry ON sanctions (expires_at) WHERE expires_at IS NOT NULL;

-- Every moderation action, whoever did it and however (WebSocket or REST).
CREATE TABLE audit_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor      text NOT NULL,
    actor_id   bigint,
    action     text NOT NULL CHECK (action IN ('kick', 'mute', 'unmute', 'ban', 'unban')),
    target     text NOT NULL,
    channel_id integer,
    reason     text,
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_created ON audit_log (created_at DESC, id DESC);
CREATE INDEX audit_log_target ON audit_log (target, created_at DESC);
CREATE INDEX audit_log_channel ON audit_log (channel_id, created_at DESC);
