"""Country databases for the tests, written by MaxMind's own writer (Debian's
libmaxmind-db-writer-perl), and a second opinion on them from MaxMind's Perl reader."""

from __future__ import annotations

import subprocess
from pathlib import Path

_WRITER = r"""
use strict; use warnings;
use MaxMind::DB::Writer::Tree;
my %types = (country => 'map', iso_code => 'utf8_string', names => 'map', en => 'utf8_string',
             registered_country => 'map');
my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version => 6, record_size => 28, database_type => 'spamkit-test-Country',
    languages => ['en'], description => { en => 'spamkit test data' },
    map_key_type_callback => sub { $types{ $_[0] } },
    remove_reserved_networks => 0, merge_strategy => 'none',
);
while (my $line = <STDIN>) {
    chomp $line;
    my ($network, $code) = split / /, $line;
    # a network with code "-" has a record with no country (only the registered one)
    my $record = $code eq '-' ? { registered_country => { iso_code => 'EU' } }
                              : { country => { iso_code => $code, names => { en => $code } } };
    $tree->insert_network($network, $record);
}
open my $out, '>:raw', $ARGV[0] or die "$ARGV[0]: $!";
$tree->write_tree($out);
close $out or die;
"""

_READER = r"""
use strict; use warnings;
use MaxMind::DB::Reader;
my $reader = MaxMind::DB::Reader->new(file => $ARGV[0]);
while (my $address = <STDIN>) {
    chomp $address;
    my $record = $reader->record_for_address($address);
    my $code = $record && $record->{country} ? $record->{country}{iso_code} : '';
    print "$code\n";
}
"""


def write_mmdb(path: Path, networks: list[tuple[str, str]]) -> Path:
    """A MaxMind DB of (network, country code) pairs, later ones over earlier ones."""
    lines = "".join(f"{network} {code}\n" for network, code in networks)
    subprocess.run(["perl", "-e", _WRITER, str(path)], input=lines.encode(), check=True, timeout=120)
    return path


def maxmind_reader_countries(path: Path, addresses: list[str]) -> list[str | None]:
    """What MaxMind's Perl reader says of each address: its country code, or None."""
    out = subprocess.run(["perl", "-e", _READER, str(path)], input="".join(a + "\n" for a in addresses).encode(),
                         check=True, capture_output=True, timeout=300).stdout.decode()
    return [line or None for line in out.split("\n")[:len(addresses)]]


def write_ranges(path: Path, lines: list[str], header: str = "") -> Path:
    """A file in tor-geoipdb's format."""
    path.write_text(header + "".join(line + "\n" for line in lines))
    return path
