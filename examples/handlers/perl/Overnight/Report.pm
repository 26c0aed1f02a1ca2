package Overnight::Report;

# Speak overnight's job protocol from Perl, with core modules only.
#
#   use Overnight::Report;
#   my $report = Overnight::Report->new;
#   $report->progress(25, 'loading orders');
#   $report->warning('2 rows skipped', code => 'SKIP', table => 'orders');
#   $report->error('warehouse refused the connection', code => 'E_CONN');
#   $report->notice('cache warmed');
#   $report->detail(rows => 1204);
#   $report->finish(summary => 'imported 1204 rows');
#
# A command job's progress, errors, warnings and notices go out at once as
# protocol lines on stdout; finish() writes the status, the summary and the
# details to the file named by $OVERNIGHT_REPORT. An HTTP handler (a
# Catalyst or Mojolicious action) makes it with live => 0 and answers with
# http_response(): the code, the headers and a JSON body holding everything.

use strict;
use warnings;
use JSON::PP ();

our $VERSION = '0.1';

sub new {
    my ($class, %options) = @_;
    return bless {
        live     => exists $options{live} ? $options{live} : 1,
        errors   => [],
        warnings => [],
        notices  => [],
        details  => {},
        progress => undef,
    }, $class;
}

# One line: line breaks become spaces.
sub _line { my ($text) = @_; $text = '' unless defined $text; $text =~ s/[\r\n]+/ /g; return $text }

# A field's value, kept clear of the characters that end it (a last `:`
# gets a space after it, which the runner trims, so that it cannot join the
# `::` that ends the fields).
sub _field { my $value = _line(shift); $value =~ tr/,=/;:/; $value =~ s/::/: /g; $value =~ s/:\z/: /; return $value }

sub _say {
    my ($self, $kind, $message, %fields) = @_;
    my $code = delete $fields{code};
    my %entry = (message => _line($message));
    my @params;
    if (defined $code) { $entry{code} = "$code"; push @params, 'code=' . _field($code) }
    if (%fields) {
        $entry{fields} = { map { $_ => "$fields{$_}" } keys %fields };
        push @params, map { _field($_) . '=' . _field($fields{$_}) } sort keys %fields;
    }
    if ($self->{live}) {
        my $head = @params ? "::$kind " . join(',', @params) . '::' : "::${kind}::";
        local $| = 1;
        print $head, $entry{message}, "\n";
    }
    return \%entry;
}

sub progress {
    my ($self, $percent, $message) = @_;
    $self->{progress} = { percent => $percent + 0, message => _line($message) };
    if ($self->{live}) { local $| = 1; print "::progress::$percent% ", _line($message), "\n" }
}

sub error   { my $self = shift; push @{ $self->{errors} },   $self->_say(error   => @_) }
sub warning { my $self = shift; push @{ $self->{warnings} }, $self->_say(warning => @_) }
sub notice  { my $self = shift; push @{ $self->{notices} },  $self->_say(notice  => @_) }

sub detail { my ($self, $name, $value) = @_; $self->{details}{$name} = $value }

# The status the run declares: from its errors and warnings.
sub status {
    my ($self) = @_;
    return 'failed' if @{ $self->{errors} };
    return @{ $self->{warnings} } ? 'warning' : 'success';
}

# The report as JSON text; everything => 1 adds what was said live.
sub report {
    my ($self, %args) = @_;
    my %body = (status => $args{status} || $self->status);
    $body{summary} = _line($args{summary}) if defined $args{summary};
    $body{details} = $self->{details} if %{ $self->{details} };
    if ($args{everything}) {
        for my $name (qw(errors warnings notices)) {
            $body{$name} = $self->{$name} if @{ $self->{$name} };
        }
        $body{progress} = $self->{progress} if $self->{progress};
    }
    return JSON::PP->new->canonical->encode(\%body);
}

# Writes the report to $OVERNIGHT_REPORT (a command job), without what
# went out live; run by hand, to stderr.
sub finish {
    my ($self, %args) = @_;
    my $text = $self->report(%args, everything => !$self->{live});
    if (my $path = $ENV{OVERNIGHT_REPORT}) {
        open my $file, '>', $path or die "cannot write $path: $!";
        print {$file} $text;
        close $file or die "cannot write $path: $!";
    } else {
        print STDERR $text, "\n";
    }
}

# (code, headers, body) for an HTTP job's answer: 500 when failed, else 200.
sub http_response {
    my ($self, %args) = @_;
    my $status = $args{status} || $self->status;
    my $body = $self->report(%args, status => $status, everything => 1);
    my %headers = (
        'Content-Type'            => 'application/json',
        'X-Batch-Complete-Status' => $status,
    );
    return ($status eq 'failed' ? 500 : 200, \%headers, $body);
}

1;
