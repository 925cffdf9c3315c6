"""The headless `potluck` command line: every capability of a node without a screen.

    main.py        the parser and `main`: each command family registers its sub-commands and their handlers
    common.py      the error type, JSON output, argument types, domain errors → one-line messages, `ready`
    models.py      make-tiny-model
    serving.py     serve (open swarms, or --swarm as a member of a private one)
    generating.py  generate
    chat.py        chat: an interactive terminal chat
    api.py         api: the OpenAI-compatible HTTP endpoint
    status.py      status
    demo.py        demo and --self-test: local swarms of real server processes
    swarm.py       swarm create, swarms, invite, join, members, revoke
    node.py        node: the process the desktop app runs (core/protocol.py on stdin/stdout)

Every module here is light: a handler imports torch, transformers or hivemind only when it runs, so `--help`
and the quick commands start fast. Run it as `potluck …` (installed) or `python -m potluck.core …`
(core/__main__.py); the entry point is `potluck.core.cli.main.main`.
"""
