"""Failures staged on private servers, to show what the hub does when a server dies under load."""
