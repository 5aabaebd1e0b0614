-- What the control plane learnt about a rule's candidate actions: verified successes and
-- failures of each candidate per context (the incident's metric family and severity).
CREATE TABLE remediation_preferences (
    rule          TEXT NOT NULL,
    context       TEXT NOT NULL,
    -- canonical JSON of the candidate action
    action        TEXT NOT NULL,
    -- position in the rule as last written, and how many candidates it had
    position      BIGINT NOT NULL,
    of_count      BIGINT NOT NULL,
    successes     BIGINT NOT NULL DEFAULT 0,
    failures      BIGINT NOT NULL DEFAULT 0,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (rule, context, action)
);
