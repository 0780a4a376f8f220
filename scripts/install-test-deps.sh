#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian 12 machine (as root): Debian's
# SpamAssassin (its rule files are read by the rule-compatibility tests, never copied),
# Dovecot (a real IMAP server for the trainer's tests), Postfix's smtp-sink and swaks
# (real SMTP peers for the filter's tests), spamc (spamd's client), procmail, dnsmasq (DNS for its DNSBL and sender
# checks), Redis (the shared token store) and clamd, all started by fixtures on loopback, 7-Zip, xz,
# bzip2, genisoimage, xorriso and gcab (the attachment check's tests read archives and disk
# images as these tools write them), unar and libarchive-tools (to check RAR), tnef (to
# check TNEF, winmail.dat), tor-geoipdb and MaxMind's Perl DB writer and reader (country
# databases), Debian's Pyzor server and client, and
# spamkit with its test extras (and a C compiler for its tokenizer and parser cores).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
[ -e /usr/share/spamassassin/50_scores.cf ] || need+=(spamassassin)
command -v dovecot >/dev/null || need+=(dovecot-imapd)
command -v smtp-sink >/dev/null || need+=(postfix)
command -v swaks >/dev/null || need+=(swaks)
# SpamAssassin's own client, talking to `spamkit spamd`
command -v spamc >/dev/null || need+=(spamc)
# procmail, running `spamkit mark` as its filter
command -v procmail >/dev/null || need+=(procmail)
# a real Redis for the shared token store's tests
command -v redis-server >/dev/null || need+=(redis-server)
# an authoritative DNS server on loopback for the DNSBL/RHSBL/sender-domain checks
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
# the Public Suffix List, which the dmarc filter reads for organizational domains
[ -e /usr/share/publicsuffix/public_suffix_list.dat ] || need+=(publicsuffix)
# swaks --tls (the STARTTLS tests) needs Perl's TLS modules, only recommended by swaks
perl -MIO::Socket::SSL -e1 2>/dev/null || need+=(libio-socket-ssl-perl libnet-ssleay-perl)
command -v openssl >/dev/null || need+=(openssl)
# systemd-analyze, to read contrib/systemd's units as systemd reads them (nothing is run)
command -v systemd-analyze >/dev/null || need+=(systemd)
# ClamAV's daemon for the clamav filter (started by a fixture with a signature of its own)
command -v clamd >/dev/null || need+=(clamav-daemon)
# archivers, to make the archives the attachment check reads as the real tools write them
command -v 7zz >/dev/null || need+=(7zip)
command -v xz >/dev/null || need+=(xz-utils)
command -v bzip2 >/dev/null || need+=(bzip2)
# disk images (ISO 9660, Joliet, UDF) and cabinets, as the tools that make them write them
command -v genisoimage >/dev/null || need+=(genisoimage)
command -v xorriso >/dev/null || need+=(xorriso)
command -v gcab >/dev/null || need+=(gcab)
# RAR readers that are not ours, to judge the RAR archives the tests write (no free tool
# writes RAR, and Debian's 7-Zip reads none)
command -v lsar >/dev/null || need+=(unar)
command -v bsdtar >/dev/null || need+=(libarchive-tools)
# a TNEF (winmail.dat) reader that is not ours, to judge the streams the tests write
command -v tnef >/dev/null || need+=(tnef)
# country databases: Debian's tor-geoipdb (real data the range reader is checked on), and
# MaxMind's own Perl writer and reader, to write the test .mmdb files and judge our lookups
# (SpamAssassin's RelayCountry reads them with the reader too)
[ -e /usr/share/tor/geoip ] || need+=(tor-geoipdb)
perl -MMaxMind::DB::Writer::Tree -e1 2>/dev/null || need+=(libmaxmind-db-writer-perl)
perl -MMaxMind::DB::Reader -e1 2>/dev/null || need+=(libmaxmind-db-reader-perl)
# Debian's Pyzor server and command, for the pyzor filter's tests (pyzord keeps its
# digests in gdbm, which Debian's Python has only with python3-gdbm)
[ -x /usr/bin/pyzord ] || need+=(pyzor)
/usr/bin/python3 -c 'import dbm.gnu' 2>/dev/null || need+=(python3-gdbm)
# a C compiler for the tokenizer's and parser's C cores (spamkit works without
# them, slower; tests check they are built)
command -v gcc >/dev/null || need+=(gcc libc6-dev)
python3 -c 'import os, sysconfig; assert os.path.exists(sysconfig.get_paths()["include"] + "/Python.h")' \
    2>/dev/null || need+=(python3-dev)
if [ ${#need[@]} -gt 0 ]; then
    # postfix only for its smtp-sink test tool: no mail system is configured
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
python3 -m pip install -q -e '.[test,lint]'
