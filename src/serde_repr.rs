//! `Serialize` / `Deserialize` (feature `serde`) for the time, status and snapshot types.
//!
//! Each type goes through a plain mirror of its representation, so the form is written down
//! once, here, for both directions. Deserialising validates what the mirror holds the way
//! reading a segment validates the payload (the same checks, the same messages): no value
//! that a reader would refuse can be built from JSON. The representations, which
//! `tests/serde.rs` pins down:
//!
//! | type | form |
//! |---|---|
//! | [`Timespec`] | `{"sec": -1, "nsec": 500000000}`, `nsec` in `0..1_000_000_000` |
//! | [`ClockStatus`] | `"Unknown"`, `"Synchronized"`, `"FreeRunning"`, `"Disrupted"` |
//! | [`LayoutVersion`] | the layout number: `2` or `3` |
//! | [`TimeWindow`] | `{"earliest": ..., "latest": ..., "clock_status": ...}`, `earliest <= latest` |
//! | [`ClockErrorBound`] | `{"layout": 2, "as_of": ..., "void_after": ..., "bound_nsec": ..., "disruption_marker": ..., "max_drift_ppb": ..., "clock_status": ..., "clock_disruption_support_enabled": ...}` |
//! | [`ClockErrorBoundV3`] | `{"layout": 3, "as_of_tsc": ..., "as_of": ..., "void_after": ..., "period_frac": ..., "period_err_frac": ..., "bound_nsec": ..., "disruption_marker": ..., "max_drift_ppb": ..., "clock_status": ..., "clock_disruption_support_enabled": ..., "period_shift": ..., "period_err_shift": ...}` |
//! | [`AnySnapshot`] | the snapshot's own form, told apart by `layout` |
//!
//! The snapshots' fields come in the payload's order. Unknown fields are errors (a misspelt
//! field is not silently dropped); the segment's padding is not represented. All but
//! [`AnySnapshot`] (which must read `layout` to know what follows) also work with formats
//! that are not self-describing.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Malformed;
use crate::layout::{LayoutVersion, decode_time};
use crate::shared::AnySnapshot;
use crate::snapshot::ClockErrorBound;
use crate::snapshot::ClockErrorBoundV3;
use crate::time::ClockStatus;
use crate::time::TimeWindow;
use crate::time::Timespec;

/// [`Timespec`]'s form, unvalidated.
#[derive(Copy, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimespecRepr {
    sec: i64,
    nsec: i64,
}

impl From<Timespec> for TimespecRepr {
    fn from(t: Timespec) -> TimespecRepr {
        TimespecRepr {
            sec: t.sec(),
            nsec: t.nsec(),
        }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for Timespec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TimespecRepr::from(*self).serialize(serializer)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for Timespec {
    /// Refuses nanoseconds outside `0..1_000_000_000` rather than carrying them into the
    /// seconds, as a segment's times are refused.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timespec, D::Error> {
        let TimespecRepr { sec, nsec } = TimespecRepr::deserialize(deserializer)?;
        Timespec::from_normalised(sec, nsec).ok_or_else(|| {
            D::Error::custom(format_args!(
                "invalid Timespec: nsec is {nsec}, expected 0 to 999999999"
            ))
        })
    }
}

/// The names of [`ClockStatus`]'s serde form, in wire-value order.
const STATUS_NAMES: [&str; 4] = ["Unknown", "Synchronized", "FreeRunning", "Disrupted"];

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for ClockStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(STATUS_NAMES[self.to_wire() as usize])
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for ClockStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ClockStatus, D::Error> {
        deserializer.deserialize_str(StatusVisitor)
    }
}

/// Reads a status name, and says which names there are when given anything else.
struct StatusVisitor;

impl serde::de::Visitor<'_> for StatusVisitor {
    type Value = ClockStatus;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "a clock status name: \"Unknown\", \"Synchronized\", \"FreeRunning\" or \"Disrupted\"",
        )
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<ClockStatus, E> {
        STATUS_NAMES
            .iter()
            .position(|n| *n == name)
            .and_then(|i| ClockStatus::from_wire(i as i32))
            .ok_or_else(|| E::unknown_variant(name, &STATUS_NAMES))
    }
}

/// [`LayoutVersion`]'s form: the layout number.
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for LayoutVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Read back as a `u64` (so that any number gets a message naming it): written as
        // one too, for formats that encode each integer width differently.
        serializer.serialize_u64(self.number().into())
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for LayoutVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<LayoutVersion, D::Error> {
        match u64::deserialize(deserializer)? {
            2 => Ok(LayoutVersion::V2),
            3 => Ok(LayoutVersion::V3),
            other => Err(D::Error::custom(format_args!(
                "layout {other} is not one this crate reads, expected 2 or 3"
            ))),
        }
    }
}

/// [`TimeWindow`]'s form.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeWindowRepr {
    earliest: Timespec,
    latest: Timespec,
    clock_status: ClockStatus,
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for TimeWindow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TimeWindowRepr {
            earliest: self.earliest,
            latest: self.latest,
            clock_status: self.clock_status,
        }
        .serialize(serializer)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for TimeWindow {
    /// Refuses a window whose `earliest` is after its `latest`: no reader returns one.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<TimeWindow, D::Error> {
        let TimeWindowRepr {
            earliest,
            latest,
            clock_status,
        } = TimeWindowRepr::deserialize(deserializer)?;
        if earliest > latest {
            return Err(D::Error::custom(format_args!(
                "invalid TimeWindow: earliest {earliest} is after latest {latest}"
            )));
        }
        Ok(TimeWindow {
            earliest,
            latest,
            clock_status,
        })
    }
}

/// [`ClockErrorBound`]'s form. The times stay unvalidated here, so that an error can name
/// the field.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct V2Repr {
    layout: LayoutVersion,
    as_of: TimespecRepr,
    void_after: TimespecRepr,
    bound_nsec: i64,
    disruption_marker: u64,
    max_drift_ppb: u32,
    clock_status: ClockStatus,
    clock_disruption_support_enabled: bool,
}

/// [`ClockErrorBoundV3`]'s form, the payload's fields in their wire order.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct V3Repr {
    layout: LayoutVersion,
    as_of_tsc: u64,
    as_of: TimespecRepr,
    void_after: TimespecRepr,
    period_frac: u64,
    period_err_frac: u64,
    bound_nsec: i64,
    disruption_marker: u64,
    max_drift_ppb: u32,
    clock_status: ClockStatus,
    clock_disruption_support_enabled: bool,
    period_shift: u8,
    period_err_shift: u8,
}

/// A snapshot of either layout, as [`AnySnapshot`] reads one: `layout` says which, and the
/// layout 3 fields must be there for layout 3 and absent for layout 2.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnyRepr {
    layout: LayoutVersion,
    as_of_tsc: Option<u64>,
    as_of: TimespecRepr,
    void_after: TimespecRepr,
    period_frac: Option<u64>,
    period_err_frac: Option<u64>,
    bound_nsec: i64,
    disruption_marker: u64,
    max_drift_ppb: u32,
    clock_status: ClockStatus,
    clock_disruption_support_enabled: bool,
    period_shift: Option<u8>,
    period_err_shift: Option<u8>,
}

/// The error for a snapshot of type `what` that a segment read would refuse too.
fn invalid<E: serde::de::Error>(what: &str, problem: Malformed) -> E {
    E::custom(format_args!("invalid {what}: {problem}"))
}

/// Checks that the form is of `layout`.
fn check_layout<E: serde::de::Error>(
    what: &str,
    found: LayoutVersion,
    layout: LayoutVersion,
) -> Result<(), E> {
    if found == layout {
        return Ok(());
    }
    Err(E::custom(format_args!(
        "invalid {what}: layout is {}, expected {}",
        found.number(),
        layout.number()
    )))
}

/// `as_of` and `void_after`, validated as a segment's are: the same check, the same
/// message.
fn times<E: serde::de::Error>(
    what: &str,
    as_of: TimespecRepr,
    void_after: TimespecRepr,
) -> Result<(Timespec, Timespec), E> {
    let time = |field, t: TimespecRepr| {
        decode_time(field, t.sec as u64, t.nsec as u64).map_err(|p| invalid(what, p))
    };
    Ok((time("as_of", as_of)?, time("void_after", void_after)?))
}

impl V2Repr {
    fn validate<E: serde::de::Error>(self) -> Result<ClockErrorBound, E> {
        const WHAT: &str = "ClockErrorBound";
        check_layout(WHAT, self.layout, LayoutVersion::V2)?;
        let (as_of, void_after) = times(WHAT, self.as_of, self.void_after)?;
        let snapshot = ClockErrorBound::builder()
            .as_of(as_of)
            .void_after(void_after)
            .bound_nsec(self.bound_nsec)
            .disruption_marker(self.disruption_marker)
            .max_drift_ppb(self.max_drift_ppb)
            .clock_status(self.clock_status)
            .clock_disruption_support_enabled(self.clock_disruption_support_enabled)
            .build();
        snapshot
            .check_arithmetic_fields()
            .map_err(|p| invalid(WHAT, p))?;
        Ok(snapshot)
    }
}

impl V3Repr {
    fn validate<E: serde::de::Error>(self) -> Result<ClockErrorBoundV3, E> {
        const WHAT: &str = "ClockErrorBoundV3";
        check_layout(WHAT, self.layout, LayoutVersion::V3)?;
        let (as_of, void_after) = times(WHAT, self.as_of, self.void_after)?;
        let snapshot = ClockErrorBoundV3::builder()
            .as_of_tsc(self.as_of_tsc)
            .as_of(as_of)
            .void_after(void_after)
            .period_frac(self.period_frac)
            .period_shift(self.period_shift)
            .period_err_frac(self.period_err_frac)
            .period_err_shift(self.period_err_shift)
            .bound_nsec(self.bound_nsec)
            .disruption_marker(self.disruption_marker)
            .max_drift_ppb(self.max_drift_ppb)
            .clock_status(self.clock_status)
            .clock_disruption_support_enabled(self.clock_disruption_support_enabled)
            .build();
        snapshot
            .check_arithmetic_fields()
            .map_err(|p| invalid(WHAT, p))?;
        Ok(snapshot)
    }
}

impl AnyRepr {
    fn validate<E: serde::de::Error>(self) -> Result<AnySnapshot, E> {
        let layout3 = [
            ("as_of_tsc", self.as_of_tsc.is_some()),
            ("period_frac", self.period_frac.is_some()),
            ("period_err_frac", self.period_err_frac.is_some()),
            ("period_shift", self.period_shift.is_some()),
            ("period_err_shift", self.period_err_shift.is_some()),
        ];
        if self.layout == LayoutVersion::V2 {
            if let Some((field, _)) = layout3.into_iter().find(|(_, set)| *set) {
                return Err(E::custom(format_args!(
                    "invalid ClockErrorBound: {field} is a layout 3 field"
                )));
            }
            return V2Repr {
                layout: self.layout,
                as_of: self.as_of,
                void_after: self.void_after,
                bound_nsec: self.bound_nsec,
                disruption_marker: self.disruption_marker,
                max_drift_ppb: self.max_drift_ppb,
                clock_status: self.clock_status,
                clock_disruption_support_enabled: self.clock_disruption_support_enabled,
            }
            .validate()
            .map(AnySnapshot::V2);
        }
        if let Some((field, _)) = layout3.into_iter().find(|(_, set)| !*set) {
            return Err(E::missing_field(field));
        }
        V3Repr {
            layout: self.layout,
            as_of_tsc: self.as_of_tsc.unwrap_or_default(),
            as_of: self.as_of,
            void_after: self.void_after,
            period_frac: self.period_frac.unwrap_or_default(),
            period_err_frac: self.period_err_frac.unwrap_or_default(),
            bound_nsec: self.bound_nsec,
            disruption_marker: self.disruption_marker,
            max_drift_ppb: self.max_drift_ppb,
            clock_status: self.clock_status,
            clock_disruption_support_enabled: self.clock_disruption_support_enabled,
            period_shift: self.period_shift.unwrap_or_default(),
            period_err_shift: self.period_err_shift.unwrap_or_default(),
        }
        .validate()
        .map(AnySnapshot::V3)
    }
}

impl LayoutVersion {
    /// The layout number of the serde form.
    fn number(self) -> u8 {
        match self {
            LayoutVersion::V2 => 2,
            LayoutVersion::V3 => 3,
        }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for ClockErrorBound {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        V2Repr {
            layout: LayoutVersion::V2,
            as_of: self.as_of().into(),
            void_after: self.void_after().into(),
            bound_nsec: self.bound_nsec(),
            disruption_marker: self.disruption_marker(),
            max_drift_ppb: self.max_drift_ppb(),
            clock_status: self.clock_status(),
            clock_disruption_support_enabled: self.clock_disruption_support_enabled(),
        }
        .serialize(serializer)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for ClockErrorBound {
    /// Validates every field as a segment's payload is validated.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ClockErrorBound, D::Error> {
        V2Repr::deserialize(deserializer)?.validate()
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for ClockErrorBoundV3 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        V3Repr {
            layout: LayoutVersion::V3,
            as_of_tsc: self.as_of_tsc(),
            as_of: self.as_of().into(),
            void_after: self.void_after().into(),
            period_frac: self.period_frac(),
            period_err_frac: self.period_err_frac(),
            bound_nsec: self.bound_nsec(),
            disruption_marker: self.disruption_marker(),
            max_drift_ppb: self.max_drift_ppb(),
            clock_status: self.clock_status(),
            clock_disruption_support_enabled: self.clock_disruption_support_enabled(),
            period_shift: self.period_shift(),
            period_err_shift: self.period_err_shift(),
        }
        .serialize(serializer)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for ClockErrorBoundV3 {
    /// Validates every field as a segment's payload is validated.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ClockErrorBoundV3, D::Error> {
        V3Repr::deserialize(deserializer)?.validate()
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for AnySnapshot {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            AnySnapshot::V2(s) => s.serialize(serializer),
            AnySnapshot::V3(s) => s.serialize(serializer),
        }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for AnySnapshot {
    /// The snapshot type its `layout` names, validated as that type is. Which fields to
    /// expect is known only once `layout` is read, so this needs a self-describing format
    /// (JSON, TOML, ...), as serde's tagged enums do.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<AnySnapshot, D::Error> {
        AnyRepr::deserialize(deserializer)?.validate()
    }
}
