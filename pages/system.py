"""System: scheduler heartbeat, job runs and failures, pause / resume / run-now per job (operator commands
the scheduler applies), pending and applied commands, data freshness, reconciliation."""

from __future__ import annotations

import streamlit as st

from app import actions, data, ui
from engine.schedule import JOB_IDS

JOB_HELP = {
    "premarket": "refresh bars, scan, build option candidates, propose entry orders",
    "intraday": "send approved orders, manage positions (every 5 minutes in market hours)",
    "postmarket": "reconcile, expire day orders, marks, account snapshot",
    "nightly": "bar backfill and database upkeep",
}


@st.fragment(run_every="15s")
def heartbeat() -> None:
    sched = data.scheduler()
    st.subheader("Scheduler")
    if sched["alive"]:
        st.success(f"Alive: instance `{sched['instance']}`, mode {sched['mode']}, last heartbeat "
                   f"{ui.ago(sched['age_seconds'])}", icon="🟢")
    elif sched["seen"]:
        st.error(f"Silent: last heartbeat {ui.ago(sched['age_seconds'])} from `{sched['instance']}`. Commands below "
                 "wait until it runs again (`python scheduler.py`).", icon="🔴")
    else:
        st.warning("No scheduler has run against this database yet. Commands below wait until one starts "
                   "(`python scheduler.py`, or `make run`).", icon="⚪")
    if sched.get("market_time"):
        which = "replay clock" if sched.get("mode") == "replay" else "wall clock"
        st.caption(f"Scheduler clock ({which}): {ui.ny_iso(sched['market_time'])}")
    beats = data.heartbeats()
    others = beats[beats["component"] != "scheduler"] if not beats.empty else beats
    for r in others.itertuples():
        st.caption(f"{r.component} ({r.instance}): last beat {ui.ago(r.age_seconds)}")


def job_controls() -> None:
    st.subheader("Jobs")
    sched = data.scheduler()
    paused = set(sched["paused"])
    summary = data.job_summary().set_index("job")
    nxt = data.next_jobs().set_index("job")
    for job in JOB_IDS:
        with st.container(border=True):
            row = summary.loc[job] if job in summary.index else None
            state = "⏸ paused" if job in paused else "▶ scheduled"
            # Say which clock each time is on: the plan and the run records are wall-clock (ET); a replaying
            # scheduler fires the same plan on its replay clock, shown separately.
            nxt_at = nxt.loc[job, "next_run"].strftime("%a %H:%M ET") if job in nxt.index else "–"
            last = (f"last {ui.status_label(row['last_outcome'])} {ui.ny(row['last_started'])} (wall clock)"
                    if row is not None and row["last_outcome"] else "never run")
            runs = f"{int(row['runs'])} runs, {int(row['failures'])} failed" if row is not None else "0 runs"
            live_next = f"next live run {nxt_at} (wall clock)"
            if sched.get("mode") == "replay" and sched.get("market_time"):
                live_next += f" · replaying now, replay clock {ui.ny_iso(sched['market_time'])}"
            st.markdown(f"**{job}** · {state} · {live_next}  \n{JOB_HELP.get(job, '')}  \n:gray[{last} · {runs}]")
            b = st.columns(3)
            if b[0].button("Pause", key=f"pause_{job}", icon="⏸", disabled=job in paused, width="stretch"):
                _command("pause_job", job)
            if b[1].button("Resume", key=f"resume_{job}", icon="▶", width="stretch"):
                _command("resume_job", job)
            if b[2].button("Run now", key=f"run_{job}", icon="⚡", width="stretch"):
                _command("run_job", job)


def _command(kind: str, job: str) -> None:
    cmd_id = actions.job_command(kind, job)
    st.session_state["system_flash"] = (f"Queued command #{cmd_id}: {kind.replace('_', ' ')} {job}. The scheduler "
                                        "applies it within seconds and records the result below.")
    st.rerun()


def commands() -> None:
    st.subheader("Operator commands")
    frame = data.commands()
    if frame.empty:
        st.caption("No commands yet.")
        return
    pending = int((frame["status"] == "pending").sum())
    if pending:
        st.info(f"{pending} command(s) waiting for the scheduler.", icon="🕓")
    st.dataframe(ui.to_local(frame.assign(state=frame["status"].map(ui.status_label)), ["created_at", "applied_at"]),
                 hide_index=True, width="stretch", key="commands", height=min(38 + 35 * len(frame), 320),
                 column_order=["id", "created_at", "kind", "payload", "created_by", "state", "applied_at",
                               "applied_by", "result"],
                 column_config={"created_at": ui.time_col("Created (ET)"), "applied_at": ui.time_col("Applied (ET)"),
                                "state": st.column_config.TextColumn("Status")})


def runs() -> None:
    st.subheader("Job runs")
    failures = data.job_runs(failures_only=True)
    if not failures.empty:
        st.error(f"{len(failures)} failed run(s) recorded; the newest:", icon="⛔")
        for r in failures.head(5).itertuples():
            with st.expander(f"{r.job_id} · {ui.ny(r.started_at)} · {r.error[:120]}"):
                st.code(r.traceback or r.error, language=None)
    frame = data.job_runs()
    if frame.empty:
        st.caption("No job runs recorded yet: the scheduler records one per job it runs.")
        return
    st.dataframe(ui.to_local(frame.assign(state=frame["outcome"].map(ui.status_label)), ["started_at", "finished_at"]),
                 hide_index=True, width="stretch", height=360, key="job_runs",
                 column_order=["id", "job_id", "trigger", "started_at", "seconds", "state", "error"],
                 column_config={"started_at": ui.time_col("Started (ET)"), "seconds": ui.number_col("Seconds", "%.1f"),
                                "state": st.column_config.TextColumn("Outcome"),
                                "error": st.column_config.TextColumn("Failure", width="large")})


def freshness() -> None:
    st.subheader("Market data")
    f = data.freshness()
    u = data.universe()
    st.markdown(f"- last stored session **{ui.day(f['last'])}**, last completed session "
                f"**{ui.day(f['expected_last'])}**\n"
                f"- **{u['instruments']:,}** instruments, {u['tradable']:,} tradable\n"
                f"- **{f['sessions']:,}** sessions stored ({f['source']}, {f['size_mb']} MB), "
                f"{ui.day(f['first'])} to {ui.day(f['last'])}\n"
                f"- **{f['gaps']}** gaps against the NYSE calendar")
    if f["sessions"] == 0:
        ui.empty("The bar store is empty: run `python -m engine init` to seed it (the nightly job keeps it current).")
    elif f["behind"]:
        st.warning(f"The bar store is {f['behind']} session(s) behind the calendar: the nightly job (or Run now) "
                   "fills them.", icon="⏳")
    else:
        st.success("Bars are current with the calendar.", icon="✅")
    if f["gaps"]:
        st.caption("Missing sessions: " + ", ".join(f["gap_dates"]))
    rec = data.last_reconciliation()
    if rec is not None:
        st.caption(f"Last reconciliation {ui.ny(rec['at'])}: {'ok' if rec['ok'] else 'differences'} · "
                   f"{rec['orders_checked']} order(s) checked · {rec['runs_with_differences']} run(s) with "
                   "differences so far")


def render() -> None:
    ui.page_header("System", "The engine process, its jobs and the data they run on.")
    flash = st.session_state.pop("system_flash", None)
    if flash:
        st.success(flash, icon="✅")
    left, right = st.columns([3, 2], gap="large")
    with left:
        job_controls()
    with right:
        heartbeat()
        freshness()
    commands()
    runs()


if __name__ == "__main__":
    render()
