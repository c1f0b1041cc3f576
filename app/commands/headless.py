"""`cadence headless` and `cadence demo`: a conversation fed from WAV files (or a script of turns) at real-time
pace through the same session the desktop app runs; prints each turn and the latency table, and on request writes
the stereo recording (left = user, right = agent) and a JSON report."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.errors import InputError
from app.paths import asset


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("headless", help="talk to Cadence with WAV files instead of a microphone")
    p.add_argument("inputs", nargs="*", metavar="INPUT.wav", help="user turns, one per file, in order")
    p.add_argument("--script", metavar="CONV.json", help="a multi-turn script (WAVs or texts, pauses, barge-ins)")
    p.add_argument("--out", metavar="OUT.wav", help="write the conversation: left = user, right = agent")
    p.add_argument("--report", metavar="REPORT.json", help="write per-turn texts and latencies as JSON")
    p.add_argument("--pause", type=float, default=1.0, help="seconds of quiet after each reply (default 1.0)")
    p.add_argument("--timeout", type=float, help="give up after this many seconds (default: 900 plus twice the "
                   "input's duration)")
    p.add_argument("--echo-db", type=float, metavar="DB",
                   help="simulate loudspeakers: feed the agent's voice back into the microphone at this level "
                        "(e.g. -20); the echo canceller (audio.echo_cancellation) must remove it")
    p.add_argument("--echo-delay-ms", type=float, default=100.0, metavar="MS",
                   help="delay of the simulated speaker-to-microphone path (default 100)")
    p.add_argument("--echo-reverb", action="store_true", help="add a room's reverberation to the simulated echo")
    p.set_defaults(func=cmd_headless)
    d = sub.add_parser("demo", help="a short headless demo conversation on the bundled demo audio")
    d.add_argument("--out", metavar="OUT.wav")
    d.add_argument("--report", metavar="REPORT.json")
    d.set_defaults(func=cmd_demo, inputs=[], script=str(asset("demo/demo.json")), pause=1.0, timeout=600.0,
                   echo_db=None, echo_delay_ms=100.0, echo_reverb=False)


def _turns(args, cfg):
    from app.headless.script import ScriptTurn, load_turns, parse_script, user_voice_synthesizer

    if args.script and args.inputs:
        raise InputError("give WAV inputs or --script, not both")
    if args.script:
        script = parse_script(Path(args.script))
    elif args.inputs:
        script = [ScriptTurn(wav=path, pause_after=args.pause) for path in args.inputs]
    else:
        raise InputError("give at least one INPUT.wav, or --script CONV.json")
    needs_voice = any(turn.text for turn in script)
    return load_turns(script, user_voice_synthesizer(cfg) if needs_voice else None)


def cmd_headless(args) -> int:
    from app.config import load_config
    from app.engine_factory import build_engines
    from app.headless.report import build_report, summary_table, write_report
    from app.headless.runner import run_conversation
    from engines.audio_io import write_audio

    cfg = load_config(args)
    for path in (args.out, args.report):
        if path and not Path(path).parent.exists():
            raise InputError(f"{path}: the folder does not exist")
    turns = _turns(args, cfg)  # bad input fails here, before any model loads
    seconds = sum(len(t.audio) for t in turns) / 16000
    timeout = args.timeout if args.timeout is not None else 900.0 + 2.0 * seconds  # a long input is never cut
    echo = _echo_path(args)
    engines = build_engines(cfg, lambda msg: print(f"[{msg}]", file=sys.stderr))
    print(f"[talking: {len(turns)} user turn(s), {seconds:.1f} s of speech]", file=sys.stderr)
    result = run_conversation(engines, cfg, turns, timeout_s=timeout, echo=echo)
    report = build_report(result)
    for turn in report["turns"]:
        cut = " [interrupted]" if turn["interrupted"] else ""
        print(f"user:  {turn['transcript']}")
        print(f"agent: {turn['reply']}{cut}")
        eot = turn["end_of_turn"]
        why = f"; turn over: {eot['reason']} after {eot['waited_ms']:.0f} ms" if eot.get("reason") else ""
        print(f"       v2v {_ms(turn['v2v_ms'])} (waveform {_ms(turn['v2v_waveform_ms'])}){why}")
    print()
    print(summary_table(report))
    if report.get("echo"):
        echo = report["echo"]
        print(f"echo canceller: delay estimate {_ms(echo['delay_ms'])}, echo reduced by "
              f"{'-' if echo['reduction_db'] is None else format(echo['reduction_db'], '.0f') + ' dB'}; "
              f"the agent paused for speech {report['agent_paused']} time(s)", file=sys.stderr)
    for note in report["notes"]:
        print(f"note: {note}", file=sys.stderr)
    if report["v2v_disagreeing_turns"]:
        print(f"note: span and waveform V2V disagree by more than {report['v2v_agreement_ms']:.0f} ms on turn(s) "
              f"{report['v2v_disagreeing_turns']}", file=sys.stderr)
    if args.out:
        write_audio(args.out, result.stereo, result.rate)
        print(f"wrote {args.out}", file=sys.stderr)
    if args.report:
        write_report(report, Path(args.report))
        print(f"wrote {args.report}", file=sys.stderr)
    if not result.records and not any(_has_speech(engines.vad, t.audio) for t in turns):
        print("note: no speech in the input, so no turn was taken", file=sys.stderr)
        return 0
    return 0 if result.records else 1


def _has_speech(vad, audio) -> bool:
    """Whether the VAD hears at least 0.25 s of speech in `audio` (asked after a run that took no turn)."""
    vad.reset()
    return int((vad.probabilities(audio) > 0.5).sum()) * vad.frame_samples >= 0.25 * 16000


def _echo_path(args):
    from app.audio.echo_path import EchoPath

    if args.echo_db is None:
        return None
    if not -80.0 <= args.echo_db <= 6.0:
        raise InputError(f"--echo-db {args.echo_db:g}: give a level between -80 and 6 dB")
    if not 0.0 <= args.echo_delay_ms <= 1000.0:
        raise InputError(f"--echo-delay-ms {args.echo_delay_ms:g}: give a delay between 0 and 1000 ms")
    return EchoPath(args.echo_db, args.echo_delay_ms, args.echo_reverb)


def cmd_demo(args) -> int:
    return cmd_headless(args)


def _ms(value) -> str:
    return "-" if value is None else f"{value:.0f} ms"
