//! The instance lifecycle: the seed's 5 states and 7 transitions, as pure data.

use std::fmt;
use std::str::FromStr;

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Idle,
    Registering,
    Running,
    Draining,
    Dead,
}

/// What moves an instance from one state to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    Register,
    Registered,
    Drain,
    Drained,
    Error,
    HeartbeatLost,
}

/// One legal step of the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub event: Event,
    pub to: State,
}

const fn t(from: State, event: Event, to: State) -> Transition {
    Transition { from, event, to }
}

/// The 7 legal transitions, in the seed's order. Everything else is illegal.
pub const TRANSITIONS: [Transition; 7] = [
    t(State::Idle, Event::Register, State::Registering),
    t(State::Registering, Event::Registered, State::Running),
    t(State::Registering, Event::Error, State::Dead),
    t(State::Running, Event::Drain, State::Draining),
    t(State::Running, Event::Error, State::Dead),
    t(State::Running, Event::HeartbeatLost, State::Dead),
    t(State::Draining, Event::Drained, State::Dead),
];

/// The pure FSM step: the next state, or `None` when `(from, event)` is not legal.
pub fn next_state(from: State, event: Event) -> Option<State> {
    TRANSITIONS
        .iter()
        .find(|t| t.from == from && t.event == event)
        .map(|t| t.to)
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 5] = [
        State::Idle,
        State::Registering,
        State::Running,
        State::Draining,
        State::Dead,
    ];

    /// The lower-case name used in Redis and in JS.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Registering => "registering",
            State::Running => "running",
            State::Draining => "draining",
            State::Dead => "dead",
        }
    }
}

impl Event {
    /// Every event, in the seed's order.
    pub const ALL: [Event; 6] = [
        Event::Register,
        Event::Registered,
        Event::Drain,
        Event::Drained,
        Event::Error,
        Event::HeartbeatLost,
    ];

    /// The upper-case name used in JS.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Register => "REGISTER",
            Event::Registered => "REGISTERED",
            Event::Drain => "DRAIN",
            Event::Drained => "DRAINED",
            Event::Error => "ERROR",
            Event::HeartbeatLost => "HEARTBEAT_LOST",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for State {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl serde::Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        State::ALL.into_iter().find(|v| v.as_str() == s).ok_or(())
    }
}

impl FromStr for Event {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Event::ALL.into_iter().find(|v| v.as_str() == s).ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_thirty_pairs_match_the_seed_table() {
        use Event::*;
        use State::*;
        let legal = [
            (Idle, Register, Registering),
            (Registering, Registered, Running),
            (Registering, Error, Dead),
            (Running, Drain, Draining),
            (Running, Error, Dead),
            (Running, HeartbeatLost, Dead),
            (Draining, Drained, Dead),
        ];
        let mut checked = 0;
        for from in State::ALL {
            for event in Event::ALL {
                let expected = legal
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                assert_eq!(next_state(from, event), expected, "{from} × {event}");
                checked += 1;
            }
        }
        assert_eq!(checked, 30);
    }

    #[test]
    fn transitions_keep_the_seed_order() {
        let names: Vec<String> = TRANSITIONS
            .iter()
            .map(|t| format!("{}-{}-{}", t.from, t.event, t.to))
            .collect();
        assert_eq!(
            names,
            [
                "idle-REGISTER-registering",
                "registering-REGISTERED-running",
                "registering-ERROR-dead",
                "running-DRAIN-draining",
                "running-ERROR-dead",
                "running-HEARTBEAT_LOST-dead",
                "draining-DRAINED-dead",
            ]
        );
    }

    #[test]
    fn names_round_trip() {
        for s in State::ALL {
            assert_eq!(s.as_str().parse::<State>(), Ok(s));
        }
        for e in Event::ALL {
            assert_eq!(e.as_str().parse::<Event>(), Ok(e));
        }
        assert!("Running".parse::<State>().is_err());
        assert!("register".parse::<Event>().is_err());
    }
}
