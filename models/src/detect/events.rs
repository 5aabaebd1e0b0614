//! Step 5 and 6: the event state of each family (or mount), hysteresis and minimum duration,
//! and the contributors an event names.

use super::*;

#[derive(Debug, Clone)]
pub(super) struct OpenEvent {
    pub(super) anomaly: Anomaly,
    pub(super) peak_ratio: f64,
    pub(super) last_emit_tick: u64,
    /// Over the clear level or not, for the last `clear_ticks` ticks (newest last).
    pub(super) recent: std::collections::VecDeque<bool>,
    /// Ticks since it opened.
    pub(super) age: usize,
    /// Tick and timestamp at which it recovered, and how, while it is held open for
    /// `merge_ticks` in case the same trouble comes back (then it goes on as the same event).
    pub(super) held: Option<(u64, i64, Recovery)>,
    /// Its family's moved baselines were set to their new level, on its age or on the host's
    /// evidence (see [`Detector::rebase_relearnt`]): its close says so.
    pub(super) rebased: bool,
}

/// How a quiet event got quiet, for its close reason.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Recovery {
    Recovered,
    /// Open `relearn_after_ticks`: its new level entered the baselines.
    Relearnt,
}

impl Recovery {
    fn text(self) -> &'static str {
        match self {
            Recovery::Recovered => "recovered",
            Recovery::Relearnt => "the new level became this host's normal",
        }
    }
}

impl OpenEvent {
    /// Firing: open and not held after recovering.
    pub(super) fn firing(&self) -> bool {
        self.held.is_none()
    }

    /// Records this tick; true when the event may close: the family is under its clear level
    /// now and was over it in at most a tenth of the last `clear_ticks` ticks. A busy host's
    /// own short spikes (a write flushed every few seconds) would otherwise keep an event open
    /// long after its cause is gone.
    pub(super) fn quiet_for(&mut self, over: bool, clear_ticks: usize) -> bool {
        self.recent.push_back(over);
        while self.recent.len() > clear_ticks {
            self.recent.pop_front();
        }
        let overs = self.recent.iter().filter(|&&o| o).count();
        !over && self.recent.len() >= clear_ticks && overs <= clear_ticks / 10
    }
}

/// Event state of one [`Family`], or of the space of one mount.
#[derive(Debug, Clone, Default)]
pub(super) struct FamilyState {
    /// The mount whose space it watches (None: the whole family).
    pub(super) device: Option<String>,
    pub(super) event: Option<OpenEvent>,
    /// Consecutive over-threshold ticks while no event is open.
    pub(super) over_run: usize,
    pub(super) over_start_ms: i64,
    pub(super) run_peak_ratio: f64,
    /// Over [`RISING_RATIO`] since the last tick below it.
    pub(super) rising: bool,
    /// Ratio of this tick.
    pub(super) ratio: f64,
}

/// Closes the event of `st` at `end_ms` because a value far beyond its series' history opens a
/// new one ([`Detector::supersede_for_extreme`]).
pub(super) fn close_superseded(st: &mut FamilyState, end_ms: i64) -> Option<EventChange> {
    close_with(st, end_ms, |lasted_s| {
        format!(
            "superseded: a value beyond any this series has had opens a new event; lasted {lasted_s:.0} s"
        )
    })
}

/// Closes the event of `st`, which recovered at `end_ms` and has been quiet `quiet_ms` since.
fn close_event(
    st: &mut FamilyState,
    family: Family,
    why: Recovery,
    end_ms: i64,
    quiet_ms: i64,
) -> Option<EventChange> {
    let quiet_s = quiet_ms as f64 / 1000.0;
    let what = match &st.device {
        Some(d) => format!("{family} of {d}"),
        None => family.to_string(),
    };
    close_with(st, end_ms, |lasted_s| {
        format!(
            "{}: {what} under its clear level for {quiet_s:.0} s; lasted {lasted_s:.0} s",
            why.text()
        )
    })
}

/// Closes the event of `st` at `end_ms`, saying `reason(seconds it lasted)`, and resets the
/// family's run.
fn close_with(
    st: &mut FamilyState,
    end_ms: i64,
    reason: impl FnOnce(f64) -> String,
) -> Option<EventChange> {
    let mut closed = st.event.take()?;
    let lasted_s = (end_ms - closed.anomaly.started_ms).max(0) as f64 / 1000.0;
    closed.anomaly.close_reason = Some(reason(lasted_s));
    closed.anomaly.ended_ms = Some(end_ms);
    closed.anomaly.updated_ms = end_ms;
    st.over_run = 0;
    st.rising = false;
    Some(EventChange {
        kind: EventKind::Closed,
        event: closed.anomaly,
    })
}

/// The family of event state `slot` (the mounts' states come after the families).
pub(super) fn slot_family(slot: usize) -> Family {
    Family::ALL.get(slot).copied().unwrap_or(Family::DiskSpace)
}

/// Share of its threshold at which a family counts as rising (see [`Tick::run_started`]).
pub const RISING_RATIO: f64 = 0.5;

/// Whether a family's values enter their baselines (see `freeze_baselines`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Learning {
    /// Yes.
    Normal,
    /// No: the family is over threshold or its event is open.
    Frozen,
    /// Yes, all: its event has been open `relearn_after_ticks`.
    Relearn,
}

impl FamilyState {
    pub(super) fn learning(&self, relearn_after: usize) -> Learning {
        match &self.event {
            Some(e) if !e.firing() => Learning::Normal,
            Some(e) if relearn_after > 0 && e.age >= relearn_after => Learning::Relearn,
            Some(_) => Learning::Frozen,
            None if self.over_run > 0 => Learning::Frozen,
            None => Learning::Normal,
        }
    }
}

impl Detector {
    /// Hysteresis and minimum duration of one event state (`families[fi]`); returns its event
    /// change of this tick.
    pub(super) fn advance_event(
        &mut self,
        fi: usize,
        ts_ms: i64,
        r_eff: f64,
    ) -> Option<EventChange> {
        let t = self.ticks;
        let family = slot_family(fi);
        let score = r_eff / (1.0 + r_eff);
        let clear_ticks = self.config.clear_ticks.max(1);
        if self.families[fi].event.is_some() {
            let new_peak = self.families[fi]
                .event
                .as_ref()
                .is_some_and(|o| r_eff > o.peak_ratio);
            let contributors = new_peak.then(|| self.contributors(fi));
            let relearn = self.config.relearn_after_ticks;
            let interval_ms = self.interval_ms_hint();
            let merge_ticks = self.config.merge_ticks as u64;
            let min_event = self.min_event_ticks();
            let min_duration = self.config.min_duration_ticks.max(1);
            let st = &mut self.families[fi];
            let mut resumed = false;
            if let Some((since, since_ms, why)) = st.event.as_ref()?.held {
                // held after recovering: back over the threshold as long as it takes to open
                // an event, and the same event goes on; quiet for the whole hold, it closes
                st.over_run = if r_eff > 1.0 { st.over_run + 1 } else { 0 };
                let back = st.over_run >= min_duration;
                let young = st.event.as_ref().is_some_and(|e| e.age < min_event);
                if !back && (t.saturating_sub(since) < merge_ticks || young) {
                    st.event.as_mut()?.age += 1;
                    return None;
                }
                if !back {
                    let quiet_ms = (clear_ticks as u64 + merge_ticks) as i64 * interval_ms;
                    return close_event(st, family, why, since_ms, quiet_ms);
                }
                st.over_run = 0;
                resumed = true;
            }
            let open = st.event.as_mut()?;
            open.age += 1;
            if resumed {
                open.held = None;
                open.recent.clear();
                open.anomaly.recovered_ms = None;
            }
            open.anomaly.score = score;
            open.anomaly.updated_ms = ts_ms;
            let quiet = open.quiet_for(r_eff >= self.config.clear_fraction, clear_ticks);
            // frozen baselines relearn a firing event's family at its age; otherwise the event
            // says so only when a relearn moved its metrics (on its age, or on the evidence)
            let relearnt = if self.config.freeze_baselines {
                relearn > 0 && open.age >= relearn
            } else {
                open.rebased
            };
            let why = if relearnt {
                Recovery::Relearnt
            } else {
                Recovery::Recovered
            };
            if quiet && (merge_ticks > 0 || open.age < min_event) {
                open.held = Some((t, ts_ms, why));
                open.anomaly.recovered_ms = Some(ts_ms);
                open.last_emit_tick = t;
                return Some(EventChange {
                    kind: EventKind::Updated,
                    event: open.anomaly.clone(),
                });
            }
            if let Some(contributors) = contributors.filter(|c| !c.is_empty()) {
                open.peak_ratio = r_eff;
                open.anomaly.peak_score = score;
                // never lower than it said before: a new peak of the score may come from a
                // different metric than the resource the event had taken
                open.anomaly.severity = open
                    .anomaly
                    .severity
                    .max(Severity::of_event(r_eff, &contributors));
                open.anomaly.contributors = contributors;
            }
            if quiet {
                return close_event(st, family, why, ts_ms, clear_ticks as i64 * interval_ms);
            }
            if resumed
                || t.saturating_sub(open.last_emit_tick) >= self.config.update_every_ticks as u64
            {
                open.last_emit_tick = t;
                return Some(EventChange {
                    kind: EventKind::Updated,
                    event: open.anomaly.clone(),
                });
            }
            return None;
        }
        let st = &mut self.families[fi];
        if r_eff > RISING_RATIO && !st.rising {
            self.run_started = true;
        }
        st.rising = r_eff > RISING_RATIO;
        if r_eff > 1.0 {
            if st.over_run == 0 {
                st.over_start_ms = ts_ms;
                st.run_peak_ratio = 0.0;
            }
            st.over_run += 1;
            st.run_peak_ratio = st.run_peak_ratio.max(r_eff);
        } else {
            st.over_run = 0;
        }
        if st.over_run < self.config.min_duration_ticks.max(1) {
            return None;
        }
        let contributors = self.contributors(fi);
        let st = &mut self.families[fi];
        let peak = st.run_peak_ratio;
        let anomaly = Anomaly {
            local_id: self.next_id,
            family,
            started_ms: st.over_start_ms,
            updated_ms: ts_ms,
            ended_ms: None,
            score,
            peak_score: peak / (1.0 + peak),
            severity: Severity::of_event(peak, &contributors),
            contributors,
            close_reason: None,
            recovered_ms: None,
        };
        self.next_id += 1;
        st.over_run = 0;
        st.event = Some(OpenEvent {
            anomaly: anomaly.clone(),
            peak_ratio: peak,
            last_emit_tick: t,
            recent: std::collections::VecDeque::new(),
            age: 0,
            held: None,
            rebased: false,
        });
        Some(EventChange {
            kind: EventKind::Opened,
            event: anomaly,
        })
    }

    /// The event state of a metric: its family's, or for the space of a mount
    /// (`disk.used_pct:/var`) that mount's own, made on first sight.
    pub(super) fn slot_of(&mut self, name: &str, family: Family) -> usize {
        let device = match name.split_once(':') {
            Some((_, d)) if family == Family::DiskSpace && !d.is_empty() => d,
            _ => return family.index(),
        };
        if let Some(i) = self
            .families
            .iter()
            .position(|st| st.device.as_deref() == Some(device))
        {
            return i;
        }
        self.families.push(FamilyState {
            device: Some(device.to_string()),
            ..FamilyState::default()
        });
        self.families.len() - 1
    }

    /// Milliseconds per tick, from the last two tick timestamps (1 s before there are two).
    pub(super) fn interval_ms_hint(&self) -> i64 {
        self.tick_ms
    }

    /// Top contributors of the current tick among the metrics of event state `slot` (every
    /// metric for the whole-host event): the largest ratios, each at least
    /// `contributor_min_ratio` except the top one.
    pub(super) fn contributors(&self, slot: usize) -> Vec<Contributor> {
        let family = slot_family(slot);
        let per_family = self.config.per_family;
        let min = self.config.contributor_min_ratio;
        let mut list = contributors_of(
            self.touched.iter().filter_map(|&i| {
                let m = &self.metrics[i];
                if per_family && m.slot_idx != slot {
                    return None;
                }
                if per_family && family == Family::Cpu && m.io_driven && self.io_episode {
                    return None;
                }
                m.baseline
                    .map(|b| (m.name.as_str(), m.last_value, b, m.ratio, m.bounded))
            }),
            self.config.max_contributors,
        );
        if min > 0.0 && !list.is_empty() {
            let keep: Vec<bool> = list
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    i == 0
                        || self.index.get(&c.metric).is_some_and(|&j| {
                            let m = &self.metrics[j];
                            m.ratio >= min && m.outside_gate(self.config.current_gate_z)
                        })
                })
                .collect();
            let mut k = keep.into_iter();
            list.retain(|_| k.next().unwrap_or(false));
        }
        list
    }
}
