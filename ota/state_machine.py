"""The per-vehicle update state machine: which report moves a record where, and what is refused."""

from __future__ import annotations

from ota.choices import UpdateState, VmgState
from ota.models import ACTIVE_STATES, TERMINAL_STATES

# Progress order of the active states; a report may skip ahead (reports get lost) but never back.
PROGRESS_RANK = {state: rank for rank, state in enumerate(ACTIVE_STATES)}

VMG_STATE_TARGET = {
    VmgState.DOWNLOADING: UpdateState.DOWNLOADING,
    VmgState.VERIFYING: UpdateState.VERIFYING,
    VmgState.INSTALLING: UpdateState.INSTALLING,
    VmgState.READY: UpdateState.AWAITING_REBOOT,
}

# What a vehicle should do next when the server's record is in a state: how a vehicle (or the
# server) that restarted converges on the same attempt (docs/PROTOCOL.md, "Resuming").
NEXT_STEP = {
    UpdateState.OFFERED: "download",
    UpdateState.DOWNLOADING: "download",
    UpdateState.DOWNLOADED: "verify",
    UpdateState.VERIFYING: "verify",
    UpdateState.INSTALLING: "install",
    UpdateState.AWAITING_REBOOT: "reboot",
}

# Moves the server itself makes (worker, operator); vehicles never cause these.
SYSTEM_TRANSITIONS: dict[str, set[str]] = {
    UpdateState.QUEUED: {UpdateState.OFFERED, UpdateState.CANCELLED},
    UpdateState.OFFERED: {UpdateState.CANCELLED, UpdateState.FAILED, UpdateState.SUCCEEDED},
    UpdateState.DOWNLOADING: {UpdateState.CANCELLED, UpdateState.FAILED},
    UpdateState.DOWNLOADED: {UpdateState.CANCELLED, UpdateState.FAILED},
    UpdateState.VERIFYING: {UpdateState.FAILED},
    UpdateState.INSTALLING: {UpdateState.FAILED},
    UpdateState.AWAITING_REBOOT: {UpdateState.FAILED},
    # Retries: automatic (back to offered) or by an operator (back to queued).
    UpdateState.FAILED: {UpdateState.OFFERED, UpdateState.QUEUED},
    UpdateState.ROLLED_BACK: {UpdateState.OFFERED, UpdateState.QUEUED},
    # A later VCI that contradicts a success reopens it.
    UpdateState.SUCCEEDED: {UpdateState.FAILED, UpdateState.ROLLED_BACK},
    UpdateState.CANCELLED: set(),
}


class InvalidTransition(Exception):
    """A report would move a record somewhere the state machine forbids."""


def next_step(state: str | None) -> str:
    """ "download", "verify", "install", "reboot", or "none" when there is nothing to do."""
    return NEXT_STEP.get(state, "none") if state else "none"


def is_behind(current: str, target: str) -> bool:
    """True for a report of an earlier phase of the attempt the record is in."""
    return (
        current in PROGRESS_RANK
        and target in PROGRESS_RANK
        and PROGRESS_RANK[target] < PROGRESS_RANK[current]
    )


def system_can_move(current: str, target: str) -> bool:
    return target in SYSTEM_TRANSITIONS.get(current, set())


def check_vehicle_move(current: str, target: str) -> None:
    """Raise InvalidTransition unless a vehicle report may move `current` to `target`."""
    if current == target:
        return
    if current in TERMINAL_STATES or current == UpdateState.QUEUED:
        raise InvalidTransition(f"the update is {current}; a report of {target} cannot change it")
    if target in (UpdateState.FAILED, UpdateState.ROLLED_BACK, UpdateState.SUCCEEDED):
        return
    if target not in PROGRESS_RANK:
        raise InvalidTransition(f"a vehicle cannot move an update to {target}")
    if PROGRESS_RANK[target] < PROGRESS_RANK[current]:
        raise InvalidTransition(f"the update is {current}; it cannot go back to {target}")


def progress_target(vmg_state: int, percentage: int | None) -> str | None:
    """The state a progress code maps to; None for codes judged elsewhere (IDLE, ERROR, COMPLETED)."""
    target = VMG_STATE_TARGET.get(VmgState(vmg_state))
    if target == UpdateState.DOWNLOADING and percentage == 100:
        return UpdateState.DOWNLOADED
    return target


def judge_running_versions(
    *,
    targets: dict[str, str],
    sources: dict[str, str],
    running: dict[str, str],
) -> tuple[str, str]:
    """After a reboot: succeeded if every target runs, rolled back if every old version runs.

    Returns (state, reason). Versions are compared as written after normalising short forms.
    """
    from ecus.versions import InvalidVersion, SemVer

    def same(a: str, b: str) -> bool:
        try:
            return SemVer.coerce(a) == SemVer.coerce(b)
        except InvalidVersion:
            return a == b

    missing = sorted(ecu for ecu in targets if ecu not in running)
    if missing:
        return UpdateState.AWAITING_REBOOT, f"no running version reported for {', '.join(missing)}"
    new = [ecu for ecu, version in targets.items() if same(running[ecu], version)]
    if len(new) == len(targets):
        return UpdateState.SUCCEEDED, ""
    old = [ecu for ecu, version in sources.items() if same(running[ecu], version)]
    if len(old) == len(targets):
        return UpdateState.ROLLED_BACK, "the vehicle runs the previous versions after reboot"
    wrong = sorted(set(targets) - set(new))
    detail = ", ".join(f"{ecu} runs {running[ecu]} not {targets[ecu]}" for ecu in wrong)
    return UpdateState.FAILED, f"partial update: {detail}"
