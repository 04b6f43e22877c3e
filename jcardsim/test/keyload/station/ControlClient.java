package keyload.station;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/** A control-port client for tests: sends a line, reads the reply up to OK or ERR. */
final class ControlClient implements AutoCloseable {

    private final Socket socket;
    private final BufferedReader in;
    private final OutputStream out;

    ControlClient(int port) throws IOException {
        socket = new Socket(InetAddress.getLoopbackAddress(), port);
        socket.setSoTimeout(2 * (int) ControlProtocol.CONNECT_WAIT_MS);
        in = new BufferedReader(new InputStreamReader(socket.getInputStream(), StandardCharsets.UTF_8));
        out = socket.getOutputStream();
    }

    void send(String line) throws IOException {
        out.write((line + "\n").getBytes(StandardCharsets.UTF_8));
        out.flush();
    }

    /** The reply lines, the final OK or ERR line included. */
    List<String> reply() throws IOException {
        List<String> lines = new ArrayList<>();
        while (true) {
            String line = in.readLine();
            if (line == null) {
                throw new IOException("station closed the control connection");
            }
            lines.add(line);
            if (line.equals("OK") || line.startsWith("ERR ")) {
                return lines;
            }
        }
    }

    List<String> call(String line) throws IOException {
        send(line);
        return reply();
    }

    @Override
    public void close() throws IOException {
        socket.close();
    }
}
