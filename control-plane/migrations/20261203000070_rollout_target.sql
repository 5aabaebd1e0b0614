-- The hosts a rollout is for, as a JSON target (`{"labels": {...}, "hosts": [...]}`); the
-- empty object selects every host. Model rollouts use it; policies select their hosts in
-- their document, so their rollouts keep the default (both tables keep the same columns).
ALTER TABLE model_rollouts ADD COLUMN target TEXT NOT NULL DEFAULT '{}';
ALTER TABLE policy_rollouts ADD COLUMN target TEXT NOT NULL DEFAULT '{}';
