"""What the Asterisk host finds on disk: its configuration, SSH keys, known_hosts and `asterisk`.

Configuration files are written on first start only (the product edits them afterwards and they
must survive restarts). They are shaped like the deployment's own files
(`../shared/fixtures/asterisk/`): comment banners, a section name reused for the Genesys endpoint
and AOR, a registration template, `#include`, and the registrations' own values
(`retry_interval=0`, `forbidden_retry_interval=0`, `max_retries=0`, `expiration=3600`), with the
lab's addresses. `max_random_initial_delay=1` keeps `lab up` quick.

Keys are generated once; known_hosts and the `asterisk` command are rewritten at every start so
that they always name this lab's address, port and control socket.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import asyncssh

from remediate.lab.layout import LabLayout

REGISTRATION_DNS = ("5001", "5002")
GENESYS_ENDPOINT = "genesys_sip_server"


def pjsip_conf(layout: LabLayout, dns: Sequence[str] = REGISTRATION_DNS) -> str:
    """The lab's pjsip.conf, with one outbound registration per DN of `dns` (a fleet's sites
    seed more than the default two)."""
    a = layout.addresses
    registrations = "".join(
        f"""
[genesys_reg_{dn}](genesys_reg_defaults)
server_uri=sip:{a.genesys_host}:{a.sip_port}
client_uri=sip:{dn}@{a.genesys_host}
contact_user={dn}
"""
        for dn in dns
    )
    return f""";=====================================
; Asterisk as SIP Gateway for Genesys SIP Endpoints
; Genesys Workspace Web Edition controls all calls
;=====================================

[global]
type=global
max_forwards=70
keep_alive_interval=90
user_agent=Asterisk-Genesys-Gateway

;=====================================
; Transport Configurations
;=====================================

; UDP Transport for Genesys SIP Server (Internal)
[transport-udp]
type=transport
protocol=udp
bind={a.asterisk_host}:{a.asterisk_sip_port}

;=====================================
; Genesys SIP Server Connection
;=====================================

[{GENESYS_ENDPOINT}]
type=endpoint
context=from-genesys
transport=transport-udp
aors={GENESYS_ENDPOINT}
disallow=all
allow=ulaw,alaw,g722,opus
from_user=asterisk-client
direct_media=no
rtp_symmetric=yes
force_rport=yes
rewrite_contact=yes
dtmf_mode=rfc4733

[{GENESYS_ENDPOINT}]
type=aor
contact=sip:{a.genesys_host}:{a.sip_port}

[genesys-identify]
type=identify
endpoint={GENESYS_ENDPOINT}
match={a.genesys_host}

;=====================================
; DN Registration to Genesys SIP Server
; Registrations for the agent DNs behind this gateway
;=====================================

[genesys_reg_defaults](!)
type=registration
transport=transport-udp
retry_interval=0        ; Don't auto-retry (registration monitor controls this)
forbidden_retry_interval=0
expiration=3600         ; 1 hour expiration when actively registered
max_retries=0           ; No retries after a failure
max_random_initial_delay=1
auth_rejection_permanent=no  ; Don't permanently disable on auth failure
{registrations}"""


EXTENSIONS_CONF = """;=====================================
; Main Asterisk Dialplan Configuration
; WebRTC-Genesys Integration
;=====================================

[general]
static=yes
writeprotect=no
clearglobalvars=no

; Include SIP endpoint dialplan
#include extensions-sip-endpoint.conf
"""

ENDPOINT_DIALPLAN = """;=====================================
; Minimal Dialplan for SIP Endpoint Model
; All call control handled by Genesys or ARI
;=====================================

;=====================================
; ARI/Stasis Context
; For WebRTC Gateway ARI application
;=====================================

[webrtc-gateway-stasis]
; Entry point for ARI-controlled calls
exten => _X.,1,NoOp(ARI Call Control for ${EXTEN})
 same => n,Stasis(webrtc-gateway)
 same => n,Hangup()

;=====================================
; Agent Context (From WebRTC Clients)
;=====================================

[genesys-agent]
; Call other agents (1XXX, 5XXX) - Route EVERYTHING through Genesys T-Server
exten => _1XXX,1,NoOp(Agent ${CALLERID(num)} calling ${EXTEN} via Genesys)
 same => n,Set(CALLERID(name)=Agent ${CALLERID(num)})
 same => n,Dial(PJSIP/${EXTEN}@genesys_sip_server,300)
 same => n,Hangup()

exten => _5XXX,1,NoOp(Agent ${CALLERID(num)} calling ${EXTEN} via Genesys)
 same => n,Set(CALLERID(name)=Agent ${CALLERID(num)})
 same => n,Dial(PJSIP/${EXTEN}@genesys_sip_server,300)
 same => n,Hangup()

; Fallback
exten => i,1,NoOp(Invalid number dialed)
 same => n,Playback(invalid)
 same => n,Hangup()
"""

# Scenario trunk-no-reverse-route: the context exists, but nothing in it matches the 5XXX DNs.
FROM_GENESYS_WITHOUT_AGENTS = """
;=====================================
; From Genesys Context
; Incoming calls from Genesys
;=====================================

[from-genesys]
; Calls to DNs 1001-1999 (agent DNs)
exten => _1XXX,1,NoOp(Call from Genesys to Agent DN ${EXTEN})
 same => n,Dial(PJSIP/${EXTEN},30,r)
 same => n,Hangup()

; No answer
exten => h,1,NoOp(Call ended)
 same => n,Hangup()
"""


def endpoint_dialplan(scenario: str) -> str:
    if scenario == "trunk-no-reverse-route":
        return ENDPOINT_DIALPLAN + FROM_GENESYS_WITHOUT_AGENTS
    return ENDPOINT_DIALPLAN


def asterisk_command(layout: LabLayout) -> str:
    """The `asterisk` executable: a remote console that talks to the lab daemon's control socket.

    In Perl (perl-base is Essential on Debian): the real console is a C program that starts in a
    few milliseconds; a Python one costs tens of milliseconds of CPU per `asterisk -rx`, which on
    a small machine weighs on every fleet run and test."""
    socket_path = str(layout.asterisk_control_socket).replace("\\", "\\\\").replace("'", "\\'")
    return PERL_CONSOLE.replace("@SOCKET@", socket_path)


PERL_CONSOLE = r"""#!/usr/bin/perl
# asterisk: the lab Asterisk's remote console (`asterisk -rx "<command>"`, `asterisk -r`).
# Perl's built-ins only (no module to load: a call costs a few milliseconds); the lab runs on
# Linux, where AF_UNIX and SOCK_STREAM are 1 and a sockaddr_un is a short and the path.
use strict;

my $VERSION = 'Asterisk 22.10.1';
my %known = map { $_ => 1 } split //, 'BCcdeFfGghIiLMmnpqRrsTtUVvWXx';
my %takes_value = map { $_ => 1 } qw(C e G L M s U x);

sub fail { print STDERR "asterisk: $_[0]\n"; exit 1 }

sub connect_to {
    socket(my $client, 1, 1, 0) or return;
    connect($client, pack('S Z*', 1, $_[0])) or return;
    return $client;
}

sub run_command {
    my ($path, $command) = @_;
    my $client = connect_to($path) or return;
    syswrite($client, "$command\n");
    shutdown($client, 1);
    binmode STDOUT;
    my $buffer;
    syswrite(STDOUT, $buffer) while sysread($client, $buffer, 65536);
    close $client;
}

my ($remote, $command, $path) = (0, undef, '@SOCKET@');
while (@ARGV) {
    my $argument = $ARGV[0];
    if ($argument eq '--') { shift @ARGV; last }
    if ($argument =~ /^--([^=]*)/) { fail("option --$1 not recognized") }
    last unless $argument =~ /^-./;
    shift @ARGV;
    my @letters = split //, substr($argument, 1);
    while (@letters) {
        my $option = shift @letters;
        fail("option -$option not recognized") unless $known{$option};
        my $value;
        if ($takes_value{$option}) {
            if (@letters) { $value = join '', @letters; @letters = () }
            elsif (@ARGV) { $value = shift @ARGV }
            else { fail("option -$option requires argument") }
        }
        if ($option eq 'r' || $option eq 'R') { $remote = 1 }
        elsif ($option eq 'x') { $remote = 1; $command = $value }
        elsif ($option eq 's') { $path = $value }
        elsif ($option eq 'V') { print "$VERSION\n"; exit 0 }
    }
}

my $probe = connect_to($path);
if (!$probe) {
    if ($remote) {
        print STDERR "Unable to connect to remote asterisk (does $path exist?)\n";
        exit 1;
    }
    fail('the lab runs Asterisk as a service; use asterisk -rx');
}
close $probe;
if (!$remote) {
    print STDERR "Asterisk already running on $path.  Use 'asterisk -r' to connect.\n";
    exit 1;
}
if (defined $command) {
    run_command($path, $command);
    exit 0;
}
open(my $name, '<', '/proc/sys/kernel/hostname') or die "hostname: $!";
(my $host = <$name>) =~ s/[.\n].*//s;
$| = 1;
while (1) {
    print "$host*CLI> ";
    my $line = <STDIN>;
    exit 0 unless defined $line;
    chomp $line;
    (my $trimmed = $line) =~ s/^\s+|\s+$//g;
    exit 0 if $trimmed eq 'exit' || $trimmed eq 'quit';
    run_command($path, $line) if length $trimmed;
}
"""


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    path.chmod(0o600)


def _ensure_key(path: Path) -> asyncssh.SSHKey:
    if path.exists():
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519", comment="remediate-lab")
    _write_private(path, key.export_private_key("openssh"))
    _write_private(path.with_name(path.name + ".pub"), key.export_public_key("openssh"))
    return key


def seed(layout: LabLayout, scenario: str) -> tuple[asyncssh.SSHKey, asyncssh.SSHKey]:
    """Create what is missing; return (host key, the authorized client key)."""
    etc = layout.asterisk_etc
    etc.mkdir(parents=True, exist_ok=True)
    for directory in (layout.bin_dir, layout.asterisk_log.parent, layout.run_dir,
                      layout.asterisk_control_socket.parent):  # fmt: skip
        directory.mkdir(parents=True, exist_ok=True)
    files = {
        "pjsip.conf": pjsip_conf(layout),
        "extensions.conf": EXTENSIONS_CONF,
        "extensions-sip-endpoint.conf": endpoint_dialplan(scenario),
    }
    for name, text in files.items():
        if not (etc / name).exists():
            (etc / name).write_text(text, encoding="utf-8")
    host_key = _ensure_key(layout.ssh_host_key)
    client_key = _ensure_key(layout.ssh_client_key)
    a = layout.addresses
    host_line = host_key.export_public_key("openssh").decode().split()
    known_hosts = f"[{a.asterisk_host}]:{a.ssh_port} {host_line[0]} {host_line[1]}\n"
    layout.known_hosts.write_text(known_hosts, encoding="utf-8")
    command = layout.bin_dir / "asterisk"
    command.write_text(asterisk_command(layout), encoding="utf-8")
    command.chmod(0o755)
    return host_key, client_key
