//! Acknowledgements and silences (maintenance windows), and the reads of notifications.

use super::*;

impl Notifier {
    /// Acknowledges an event: who and why, once. Stops reminders; channels that were told
    /// the opening are told the acknowledgement (PagerDuty: `acknowledge`). Returns the
    /// acknowledgement and whether it is this one.
    pub async fn acknowledge(
        &self,
        event_id: &str,
        by: &str,
        note: &str,
    ) -> Result<(Ack, bool), ServiceError> {
        if note.chars().count() > 1000 || note.chars().any(|c| c.is_control() && c != '\n') {
            return Err(ServiceError::Invalid(
                "note: at most 1000 characters, no control characters".into(),
            ));
        }
        let now = now_ms();
        let (ack, fresh) = self
            .store
            .ack_anomaly(event_id, by, note.trim(), now)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no anomaly {event_id:?}")))?;
        if fresh {
            if let Some(e) = self.store.event_view(event_id).await? {
                if e.open {
                    for (name, state) in self
                        .store
                        .notified_channels(event_id, "anomaly.opened")
                        .await?
                    {
                        let Some(ch) = self.channels.iter().find(|c| c.config.name == name) else {
                            continue;
                        };
                        if state == "silenced" {
                            continue;
                        }
                        self.enqueue(
                            &ch.config,
                            &e.id,
                            "anomaly.acknowledged",
                            &e.host,
                            e.severity.as_str(),
                            &e.family,
                            None,
                            |id| self.event_body(&e, "anomaly.acknowledged", id, now),
                            now,
                        )
                        .await?;
                    }
                }
            }
        }
        Ok((ack, fresh))
    }

    pub async fn create_silence(
        &self,
        by: &str,
        input: SilenceIn,
    ) -> Result<Silence, ServiceError> {
        let now = now_ms();
        let invalid = |m: String| Err(ServiceError::Invalid(m));
        let starts = input.starts_ms.unwrap_or(now);
        let ends = match (input.ends_ms, input.duration_secs) {
            (Some(_), Some(_)) => return invalid("set ends_ms or duration_secs, not both".into()),
            (Some(e), None) => e,
            (None, Some(d)) if (60..=MAX_SILENCE_MS / 1000).contains(&d) => {
                starts.saturating_add(d * 1000)
            }
            (None, Some(d)) => {
                return invalid(format!(
                    "duration_secs: {d} is outside 60..={}",
                    MAX_SILENCE_MS / 1000
                ))
            }
            (None, None) => return invalid("ends_ms or duration_secs is required".into()),
        };
        if ends <= starts.max(now) {
            return invalid(
                "ends_ms: the silence would end before it starts (or in the past)".into(),
            );
        }
        if ends - starts > MAX_SILENCE_MS {
            return invalid("a silence lasts at most 30 days".into());
        }
        if starts > now + 365 * 86_400_000 {
            return invalid("starts_ms: more than a year ahead".into());
        }
        let comment = input.comment.trim();
        if comment.is_empty() || comment.chars().count() > 500 {
            return invalid("comment: say why, in 1 to 500 characters".into());
        }
        if input.labels.len() > 20 || input.hosts.len() > 1000 || input.families.len() > 7 {
            return invalid("at most 20 labels, 1000 hosts and 7 families".into());
        }
        for (k, v) in &input.labels {
            if k.is_empty() || k.len() > 63 || v.len() > 255 || k.chars().any(char::is_control) {
                return invalid(format!("labels: {:?} is not a label", clip(k, 40)));
            }
        }
        if let Some(h) = input
            .hosts
            .iter()
            .find(|h| !crate::domain::valid_agent_id(h))
        {
            return invalid(format!("hosts: {:?} is not a host id", clip(h, 40)));
        }
        if let Some(f) = input.families.iter().find(|f| Family::parse(f).is_none()) {
            let valid: Vec<&str> = Family::ALL.iter().map(|f| f.as_str()).collect();
            return invalid(format!(
                "families: {:?} is not a family; valid: {}",
                clip(f, 40),
                valid.join(", ")
            ));
        }
        let silence = Silence {
            id: crate::domain::new_id("sil"),
            labels: input.labels,
            hosts: input.hosts,
            families: input.families,
            starts_ms: starts,
            ends_ms: ends,
            comment: comment.to_string(),
            created_by: by.to_string(),
            created_ms: now,
            expired_by: String::new(),
        };
        self.store.insert_silence(&silence).await?;
        Ok(silence)
    }

    /// Silences not yet over (with `all`: every one kept).
    pub async fn silences(&self, all: bool) -> Result<Vec<Silence>, ServiceError> {
        Ok(self.store.silences((!all).then(now_ms)).await?)
    }

    pub async fn silence(&self, id: &str) -> Result<Silence, ServiceError> {
        self.store
            .silence(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no silence {id:?}")))
    }

    /// Ends a silence now.
    pub async fn expire_silence(&self, id: &str, by: &str) -> Result<Silence, ServiceError> {
        let now = now_ms();
        if !self.store.expire_silence(id, by, now).await? {
            return match self.store.silence(id).await? {
                Some(_) => Err(ServiceError::Conflict(format!(
                    "silence {id:?} has already ended"
                ))),
                None => Err(ServiceError::NotFound(format!("no silence {id:?}"))),
            };
        }
        self.store
            .silence(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no silence {id:?}")))
    }

    pub async fn notifications(
        &self,
        q: &NotificationQuery,
    ) -> Result<Vec<Notification>, ServiceError> {
        Ok(self.store.notifications(q).await?)
    }

    pub async fn ack_of(&self, event_id: &str) -> Result<Option<Ack>, ServiceError> {
        Ok(self
            .store
            .anomaly_ack(event_id)
            .await?
            .filter(|a| !a.by.is_empty()))
    }
}
