package keyload.station;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.util.HexFormat;
import java.util.List;
import org.junit.Test;

public class StationOptionsTest {

    @Test
    public void parsesReadersInOrderAndDefaults() {
        StationOptions options = StationOptions.parse("--reader", "35963=AS", "--reader", "35964=ei",
                "--reader", "35965=EMPTY");
        assertEquals("127.0.0.1", options.vpcdHost());
        assertEquals(35990, options.controlPort());
        assertEquals(List.of(35963, 35964, 35965), List.copyOf(options.readers().keySet()));
        assertEquals("keyload.applet.EiApplet", options.roles().lookup("EI").appletClassName());
        assertArrayEquals(HexFormat.of().parseHex("F04B45594C4F414401"), options.roles().lookup("AS").aid());
    }

    @Test
    public void readersMayNameTheProtocolOfTheirCards() {
        StationOptions options = StationOptions.parse("--reader", "35963=AS:T0", "--reader", "35964=ei:t1",
                "--reader", "35965=EI", "--reader", "35966=EMPTY:T0");
        assertEquals(List.of(new ReaderSpec("AS", CardProtocol.T0), new ReaderSpec("ei", CardProtocol.T1),
                new ReaderSpec("EI", CardProtocol.T1), new ReaderSpec("EMPTY", CardProtocol.T0)),
                List.copyOf(options.readers().values()));
        assertMessage("T0 or T1", () -> StationOptions.parse("--reader", "1=AS:T2"));
        assertMessage("without a role", () -> StationOptions.parse("--reader", "1=:T0"));
    }

    @Test
    public void extraRoleMayComeAfterTheReaderUsingIt() {
        StationOptions options = StationOptions.parse("--control-port", "4000", "--reader", "5000=probe",
                "--role", ProbeApplet.ROLE_SPEC);
        assertEquals(4000, options.controlPort());
        assertEquals(ProbeApplet.class.getName(), options.roles().lookup("PROBE").appletClassName());
    }

    @Test
    public void rejectsWhatCannotWork() {
        assertMessage("no --reader", () -> StationOptions.parse("--control-port", "1"));
        assertMessage("unknown role 'XX'", () -> StationOptions.parse("--reader", "1=XX"));
        assertMessage("given twice", () -> StationOptions.parse("--reader", "1=AS", "--reader", "1=EI"));
        assertMessage("not a TCP port", () -> StationOptions.parse("--reader", "70000=AS"));
        assertMessage("needs a value", () -> StationOptions.parse("--reader"));
        assertMessage("unknown option", () -> StationOptions.parse("--bogus", "1"));
        assertMessage("NAME=class:AIDHEX", () -> StationOptions.parse("--role", "X=nocolon", "--reader", "1=AS"));
        assertMessage("5..16 bytes", () -> StationOptions.parse("--role", "X=a.B:0102", "--reader", "1=AS"));
        assertMessage("reserved", () -> StationOptions.parse("--role", "EMPTY=a.B:0102030405", "--reader", "1=AS"));
    }

    private static void assertMessage(String expected, org.junit.function.ThrowingRunnable parse) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, parse);
        assertTrue(e.getMessage(), e.getMessage().contains(expected));
    }
}
