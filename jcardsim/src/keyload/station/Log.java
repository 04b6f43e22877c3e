package keyload.station;

import java.time.LocalTime;
import java.time.temporal.ChronoUnit;

/**
 * The station's log: one line per event on stderr. Callers pass event descriptions only, never APDU
 * contents, which can carry keys.
 */
final class Log {

    private Log() {
    }

    static void event(String message) {
        System.err.println(LocalTime.now().truncatedTo(ChronoUnit.MILLIS) + " station: " + message);
    }
}
