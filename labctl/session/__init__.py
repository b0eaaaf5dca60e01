"""Exam sessions: a room of candidates, each in an isolated lab, timed, graded, reset.

Modules: roster (who sits the exam), clock (when each candidate's time ends), model (the
session on disk), room (create/start/grade/reset/destroy over every lab), store (grading
runs in SQLite or PostgreSQL), signature (Ed25519), audit (proctor actions), reports
(jury reports), access (gateway accounts), dashboard (the proctor's web page).
"""
